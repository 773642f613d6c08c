"""A step's run options: declared in workflow.json, chosen on the page, passed on its command line.

One owner for the three things an option is: its declaration (checked when the
registry loads: a bad one is a one-line config problem naming the option), a
value submitted for it (checked before anything runs: a bad one is a one-line
message naming the option, the API's 422), and the command-line argument it
becomes. Only values that differ from the declared default are passed, so the
step's own config file stays the default: the declared defaults mirror it
(tests/dashboard/test_options.py checks STEP3's against config/step3_transnet.json).

The step's own validation stays the last word: a value it refuses fails the
run with the step's one-line ERROR message.
"""
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepkit.videos import FolderError, relative_name, walk_videos

TYPES = ("number", "integer", "boolean", "choice", "videos")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
FLAG = re.compile(r"^--[a-z0-9][a-z0-9-]{0,63}$")
KNOWN_KEYS = {"name", "label", "type", "default", "min", "max", "exclusive", "auto", "choices", "help", "flag"}
AUTO = "auto"
MAX_VIDEOS_BYTES = 100_000  # one argument may be 128 KiB on Linux (MAX_ARG_STRLEN)
VIDEOS_SHOWN = 3  # a summary names this many chosen videos, then counts the rest


class OptionError(ValueError):
    """A submitted value is refused; the message names the option and says why."""


@dataclass(frozen=True)
class Option:
    name: str
    label: str
    type: str
    default: Any
    flag: str
    help: str = ""
    min: float | None = None
    max: float | None = None
    exclusive: bool = False  # min and max themselves are refused (a threshold in (0, 1))
    auto: bool = False       # "auto" is a value too (decoder workers: auto or 1..64)
    choices: tuple = ()

    def as_json(self) -> dict:
        """The declaration as the page and the API read it."""
        data = {"name": self.name, "label": self.label, "type": self.type, "default": self.default,
                "help": self.help, "flag": self.flag}
        if self.type in ("number", "integer"):
            data.update(min=self.min, max=self.max, exclusive=self.exclusive, auto=self.auto)
        if self.type == "choice":
            data["choices"] = list(self.choices)
        return data


# ---- declarations (workflow.json) -------------------------------------------

def parse_declarations(raw) -> tuple[tuple, list[str]]:
    """The options of a step's "options" list, and one line per problem."""
    if not isinstance(raw, list):
        return (), ["options must be a list of {\"name\", \"label\", \"type\", \"default\", \"flag\", ...}"]
    options, problems, seen = [], [], set()
    for position, entry in enumerate(raw, 1):
        try:
            option = _declaration(entry, position)
        except OptionError as exc:
            problems.append(str(exc))
            continue
        if option.name in seen:
            problems.append(f"option {option.name}: declared twice")
            continue
        seen.add(option.name)
        options.append(option)
    return tuple(options), problems


def _declaration(entry, position: int) -> Option:
    if not isinstance(entry, dict):
        raise OptionError(f"option #{position}: must be an object")
    name = entry.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise OptionError(f"option #{position}: name {name!r} must be lower-case letters, digits or '_'")

    def bad(text: str) -> OptionError:
        return OptionError(f"option {name}: {text}")

    unknown = set(entry) - KNOWN_KEYS
    if unknown:
        raise bad(f"unknown key(s): {', '.join(sorted(unknown))}")
    kind = entry.get("type")
    if kind not in TYPES:
        raise bad(f"type {kind!r} must be one of {', '.join(TYPES)}")
    flag = entry.get("flag")
    if not isinstance(flag, str) or not FLAG.match(flag):
        raise bad(f"flag {flag!r} must be a long option like \"--threshold\"")
    texts = {key: entry.get(key, default) for key, default in (("label", name), ("help", ""))}
    if not all(isinstance(v, str) for v in texts.values()):
        raise bad("label and help must be strings")
    option = Option(name=name, label=texts["label"] or name, type=kind, default=entry.get("default"), flag=flag,
                    help=texts["help"], **_limits(entry, kind, bad))
    if kind == "videos" and option.default is not None:
        raise bad("default must be null (every video)")
    try:
        check_value(option, option.default)
    except OptionError as exc:
        raise bad(f"default: {str(exc).split(': ', 1)[1]}") from None
    return option


def _limits(entry: dict, kind: str, bad) -> dict:
    """min/max/exclusive/auto of a number, choices of a choice; refused on other types."""
    numeric = kind in ("number", "integer")
    for key in ("min", "max", "exclusive", "auto"):
        if key in entry and not numeric:
            raise bad(f"{key} applies to numbers only")
    if "choices" in entry and kind != "choice":
        raise bad("choices applies to a choice only")
    limits = {}
    for key in ("min", "max"):
        value = entry.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise bad(f"{key} must be a number")
        limits[key] = value
    if limits.get("min") is not None and limits.get("max") is not None and limits["min"] >= limits["max"]:
        raise bad("min must be below max")
    for key in ("exclusive", "auto"):
        if not isinstance(entry.get(key, False), bool):
            raise bad(f"{key} must be true or false")
        limits[key] = entry.get(key, False)
    if kind == "choice":
        choices = entry.get("choices")
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str) and c for c in choices):
            raise bad("choices must be a non-empty list of strings")
        limits["choices"] = tuple(choices)
    return limits


# ---- submitted values ---------------------------------------------------------

def check_value(option: Option, value):
    """The value, normalised, or OptionError naming the option."""
    def bad(text: str) -> OptionError:
        return OptionError(f"option {option.name}: {text}, got {json.dumps(value, ensure_ascii=False)[:200]}")

    kind = option.type
    if kind == "boolean":
        if not isinstance(value, bool):
            raise bad("must be true or false")
        return value
    if kind == "choice":
        if value not in option.choices:
            raise bad(f"must be one of {', '.join(option.choices)}")
        return value
    if kind == "videos":
        if value is None:
            return None
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise bad("must be null (every video) or a non-empty list of video paths")
        # Names as given: " a.mp4" is another video than "a.mp4".
        chosen = list(dict.fromkeys(value))  # each once, in the order given
        if len(json.dumps(chosen)) > MAX_VIDEOS_BYTES:
            raise bad(f"names {len(chosen)} videos, too many for one command line: choose fewer "
                      f"(or leave it empty for every video)")
        return chosen
    return _number(option, value, bad)


def _number(option: Option, value, bad):
    if option.auto and value == AUTO:
        return value
    whole = option.type == "integer"
    either = " or \"auto\"" if option.auto else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not isinstance(value, int)):
        raise bad(f"must be {'a whole number' if whole else 'a number'}{either}")
    if isinstance(value, float) and not math.isfinite(value):
        raise bad("must be a finite number")
    if isinstance(value, int) and abs(value) > 2**53:  # a 400-digit integer is no decoder count
        raise bad(f"must be {_range(option)}")
    low, high = option.min, option.max
    if option.exclusive:
        outside = (low is not None and value <= low) or (high is not None and value >= high)
    else:
        outside = (low is not None and value < low) or (high is not None and value > high)
    if outside:
        raise bad(f"must be {_range(option)}")
    return value


def _range(option: Option) -> str:
    low, high = option.min, option.max
    if low is not None and high is not None:
        return f"between {low:g} and {high:g}" + (" (exclusive)" if option.exclusive else "")
    if low is not None:
        return f"{'above' if option.exclusive else 'at least'} {low:g}"
    return f"{'below' if option.exclusive else 'at most'} {high:g}"


def resolve(options: tuple, submitted, projects_dir: Path) -> dict:
    """Every declared option's value for a run: the submitted ones checked, the
    others their defaults. Raises OptionError (one line, naming the option)."""
    if submitted is None:
        submitted = {}
    if not isinstance(submitted, dict):
        raise OptionError("options must be an object of option name -> value")
    by_name = {o.name: o for o in options}
    unknown = [name for name in submitted if name not in by_name]
    if unknown:
        known = ", ".join(by_name) or "none"
        raise OptionError(f"unknown option {unknown[0]!r} (this step's options: {known})")
    values = {}
    for option in options:
        value = check_value(option, submitted.get(option.name, option.default))
        if option.type == "videos" and value is not None:
            _check_in_folder(option, value, projects_dir)
        values[option.name] = value
    return values


def _check_in_folder(option: Option, chosen: list, projects_dir: Path) -> None:
    """Every chosen video is one the steps find in the projects folder now."""
    try:
        found = {relative_name(path, projects_dir) for path in walk_videos(projects_dir)}
    except (FolderError, OSError) as exc:
        raise OptionError(f"option {option.name}: the projects folder cannot be read ({exc})") from None
    for name in chosen:
        if name not in found:
            raise OptionError(f"option {option.name}: {name!r} is not a video of the projects folder {projects_dir}")


# ---- the command line and the words -----------------------------------------

def to_argv(options: tuple, values: dict | None) -> list[str]:
    """The arguments for the values that differ from their defaults, in declaration order."""
    argv = []
    for option in options:
        if not values or option.name not in values or values[option.name] == option.default:
            continue
        value = values[option.name]
        if option.type == "boolean":
            argv.append(option.flag if value else "--no-" + option.flag[2:])
        elif option.type == "videos":
            # A JSON list, so that names with commas stay whole (STEP3 reads both forms).
            argv.append(f"{option.flag}={json.dumps(value, ensure_ascii=False)}")
        else:
            argv.append(f"{option.flag}={value}")
    return argv


def changed(options: tuple, values: dict | None) -> dict:
    """The values that differ from the declared defaults (options no longer declared included)."""
    defaults = {o.name: o.default for o in options}
    return {k: v for k, v in (values or {}).items() if k not in defaults or v != defaults[k]}


def summary(options: tuple, values: dict | None) -> str | None:
    """The non-default values in a few words ("Threshold 0.3 · Force re-run"), "" when all
    are defaults, None when the run recorded no options (an older history)."""
    if values is None:
        return None
    labels = {o.name: o.label for o in options}
    parts = []
    for name, value in changed(options, values).items():
        label = labels.get(name, name)
        if value is True:
            parts.append(label)
        elif value is False:
            parts.append(f"{label}: off")
        elif isinstance(value, list):
            shown = ", ".join(value[:VIDEOS_SHOWN])
            more = f" and {len(value) - VIDEOS_SHOWN} more" if len(value) > VIDEOS_SHOWN else ""
            parts.append(f"{label}: {shown}{more}")
        elif value is None:
            parts.append(f"{label}: all")
        else:
            parts.append(f"{label} {value}")
    return " · ".join(parts)
