"""Reading a STEP3 result: is this document in the format that
stepkit.scene_results writes (docs/result-format.md)? What the dashboard
uses to read results from its own venv.
"""
import json
import math
import re
from pathlib import Path
from typing import List, Optional, Sequence

from .scene_results import FORMAT

# -- reading a result: is this document in the format? ---------------------------------
# docs/result-format.md describes every field below; a change of the fields (one
# added, removed, renamed or retyped) is a new FORMAT, so a reader never takes a
# document it does not know for one it does.
class ResultError(ValueError):
    """A result file that cannot be used; the message is one line naming the
    file and the cause, ``problems`` holds every problem found."""

    def __init__(self, message: str, problems: Sequence[str] = ()):
        super().__init__(message)
        self.problems = list(problems)


# Added to step3-scenes/1 later, compatibly: results written before lack them.
OPTIONAL_FIELDS = {"frame_source"}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_TIMECODE = re.compile(r"^(\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3})$")
_RATE = re.compile(r"^\d+/[1-9]\d*$")
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2}|Z)$")


def _shown(value) -> str:
    """A value as a problem line quotes it: JSON, cut short so the line stays one."""
    if isinstance(value, str) and len(value) > 37:
        return json.dumps(value[:37], ensure_ascii=False)[:-1] + '..."'
    text = repr(value) if isinstance(value, float) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


# Each check gives the cause of a wrong value (the value quoted), or None.
def _integer(minimum: int):
    def check(v):
        return None if _is_int(v) and v >= minimum else f"must be an integer >= {minimum}, got {_shown(v)}"
    return check


def _number(minimum: float, nullable: bool = False):
    def check(v):
        if (v is None and nullable) or (_is_number(v) and v >= minimum):
            return None
        return f"must be a number >= {minimum:g}{' or null' if nullable else ''}, got {_shown(v)}"
    return check


def _text(pattern: Optional[re.Pattern] = None, what: str = "a non-empty string"):
    def check(v):
        if isinstance(v, str) and v and (pattern is None or pattern.match(v)):
            return None
        return f"must be {what}, got {_shown(v)}"
    return check


def _constant(expected):
    def check(v):
        return None if v == expected and type(v) is type(expected) else f"must be {_shown(expected)}, got {_shown(v)}"
    return check


def _threshold(v):
    # STEP3's configuration refuses 0 and 1: every frame, or none, would be a cut.
    if _is_number(v) and 0 < v < 1:
        return None
    return f"must be a number between 0 and 1 (exclusive), got {_shown(v)}"


def _boolean(v):
    return None if isinstance(v, bool) else f"must be true or false, got {_shown(v)}"


def _is_texts(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, str) and x for x in v)


def _texts(v):
    return None if _is_texts(v) else f"must be a non-empty list of non-empty strings, got {_shown(v)}"


def _text_or_texts(v):
    if (isinstance(v, str) and v) or _is_texts(v):
        return None
    return f"must be a non-empty string or a list of them, got {_shown(v)}"


def _probabilities(v):
    # One problem for the array, at its first wrong value: not one per frame.
    if not isinstance(v, list):
        return f"must be a list of numbers from 0 to 1, got {_shown(v)}"
    for i, x in enumerate(v):
        if not (_is_number(x) and 0 <= x <= 1):
            return f"must be a list of numbers from 0 to 1 (item {i} is {_shown(x)})"
    return None


_SCENE = {
    "no": _integer(1),
    "timecode_in": _text(_TIMECODE, "a timecode HH:MM:SS.mmm"),
    "timecode_out": _text(_TIMECODE, "a timecode HH:MM:SS.mmm"),
    "frame_in": _integer(1),
    "frame_out": _integer(1),
}

# Every field: a check, an object of fields, or a list of objects ([fields]).
_FIELDS = {
    "video": {
        "file": _text(),
        "identity": {"size": _integer(0), "mtime_ns": _integer(0)},
        "codec": _text(),
        "width": _integer(1),
        "height": _integer(1),
        "fps": _number(0),
        "frame_rate": _text(_RATE, 'a rate "N/D"'),
        "duration_s": _number(0, nullable=True),
        "frame_count": _integer(1),
        "decoded_span_s": _number(0),
        "decode_errors": _integer(0),
        "decoded_in_segments": _integer(1),
    },
    "threshold": _threshold,
    "scene_count": _integer(0),
    "scenes": [_SCENE],
    "model": {
        "name": _text(),
        "weights_file": _text(),
        "weights_sha256": _text(_HEX64, "64 lower-case hexadecimal digits"),
    },
    "device": _text_or_texts,
    "precision": _text_or_texts,
    "torchscript": _boolean,
    "implementation": _texts,
    "frame_source": _text_or_texts,
    "timings": {
        "started_at": _text(_ISO_TIME, "an ISO 8601 time with its UTC offset"),
        "wall_s": _number(0),
        "inference_s": _number(0),
        "model_load_s": _number(0),
    },
    "predictions": {"single_frame": _probabilities, "all_frames": _probabilities},
    "csv": {
        "file": _text(re.compile(r".*\.csv$"), "a file name ending in .csv"),
        "sha256": _text(_HEX64, "64 lower-case hexadecimal digits"),
    },
    "format": _constant(FORMAT),
    "complete": _constant(True),
}


def field_paths(spec: Optional[dict] = None, prefix: str = "") -> List[str]:
    """Every field's path, as docs/result-format.md names it (``scenes[].no``)."""
    paths = []
    for name, sub in (_FIELDS if spec is None else spec).items():
        path = prefix + name
        paths.append(path)
        if isinstance(sub, dict):
            paths += field_paths(sub, path + ".")
        elif isinstance(sub, list):
            paths += field_paths(sub[0], path + "[].")
    return paths


def _check_object(value, spec: dict, where: str, problems: List[str]) -> None:
    if not isinstance(value, dict):
        problems.append(f"{where or 'the document'}: must be an object, got {_shown(value)}")
        return
    prefix = where + "." if where else ""
    for name, sub in spec.items():
        path = prefix + name
        if name not in value:
            if path not in OPTIONAL_FIELDS:
                problems.append(f"{path}: missing")
        elif isinstance(sub, dict):
            _check_object(value[name], sub, path, problems)
        elif isinstance(sub, list):
            if not isinstance(value[name], list):
                problems.append(f"{path}: must be a list, got {_shown(value[name])}")
                continue
            for i, item in enumerate(value[name]):
                _check_object(item, sub[0], f"{path}[{i}]", problems)
        else:
            cause = sub(value[name])
            if cause:
                problems.append(f"{path}: {cause}")
    for name in value:
        if name not in spec:
            problems.append(f"{prefix}{name}: not a field of {FORMAT}")


def _seconds(timecode: str) -> float:
    h, m, s, ms = _TIMECODE.match(timecode).groups()
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def check_document(doc) -> List[str]:
    """What keeps ``doc`` (a parsed ``.scenes.json``) from following FORMAT, one
    line per problem naming the field and the cause; empty when it follows it.
    Checks each field's type and range, then what ties them together (the scene
    count, the scenes' order, one prediction per frame)."""
    if isinstance(doc, dict) and doc.get("format") != FORMAT and "format" in doc:
        # Another version's fields are not ours to judge one by one.
        return [f"format: {_shown(doc['format'])} is not {FORMAT}, the format this reader knows"]
    problems: List[str] = []
    _check_object(doc, _FIELDS, "", problems)
    if problems:
        return problems  # the relations below assume the fields are sound

    scenes, frames = doc["scenes"], doc["video"]["frame_count"]
    if doc["scene_count"] != len(scenes):
        problems.append(f"scene_count: {doc['scene_count']} but scenes holds {len(scenes)}")
    previous_out = 0
    for i, scene in enumerate(scenes):
        where = f"scenes[{i}]"
        if scene["no"] != i + 1:
            problems.append(f"{where}.no: {scene['no']} where {i + 1} is due (scenes are numbered from 1, in order)")
        if scene["frame_in"] > scene["frame_out"]:
            problems.append(f"{where}.frame_in: {scene['frame_in']} is after frame_out {scene['frame_out']}")
        elif scene["frame_in"] <= previous_out:
            problems.append(f"{where}.frame_in: {scene['frame_in']} is not after the previous scene's "
                            f"frame_out {previous_out}")
        if scene["frame_out"] > frames:
            problems.append(f"{where}.frame_out: {scene['frame_out']} is beyond the video's {frames} frames")
        if _seconds(scene["timecode_in"]) > _seconds(scene["timecode_out"]):
            problems.append(f"{where}.timecode_in: {scene['timecode_in']} is after timecode_out "
                            f"{scene['timecode_out']}")
        previous_out = scene["frame_out"]
    for name in ("single_frame", "all_frames"):
        values = doc["predictions"][name]
        if len(values) != frames:
            problems.append(f"predictions.{name}: {len(values)} values for the video's {frames} frames")
    return problems


def load_result(path: Path) -> dict:
    """The document of a ``.scenes.json`` that follows FORMAT; raises ResultError
    (one line: the file and the first problem) when it cannot be read or does
    not follow it. Whether it still describes its video is ``is_complete``'s
    question."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ResultError(f"{path}: not a result (not UTF-8 text)") from None
    except OSError as exc:
        raise ResultError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ResultError(f"{path}: not a result (not JSON: {exc})") from None
    problems = check_document(doc)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise ResultError(f"{path}: {problems[0]}{more}", problems)
    return doc
