"""The steps, as config/workflow.json describes them, validated.

Problems never stop the dashboard: a step whose entry is wrong is still listed
and its card says what is wrong, in one line per problem. Problems that can
change while the server runs (a venv built by `make setup`, a script that
lands) are checked at each look, not only at start-up.
"""
import json
import os
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

from stepkit.progress_lines import resolve_patterns

from .options import parse_declarations
from .progress import LineMatcher, PatternError, compile_patterns

STEP_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
VENV_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
PLACEHOLDERS = ("root", "projects_dir", "logs_dir")
DEFAULT_SETUP = "make setup"
DEFAULT_VENVS = {"env": {"setup": DEFAULT_SETUP}}
KNOWN_KEYS = {
    "id", "name", "description", "script", "venv", "args", "cwd", "env", "resources",
    "progress_patterns", "run_all", "cancel_grace_s", "exit_codes", "done_verb", "options",
}


@dataclass(frozen=True)
class Venv:
    name: str
    setup: str


@dataclass(frozen=True)
class Step:
    id: str
    name: str
    description: str = ""
    script: str = ""
    venv: str = ""
    args: tuple = ()
    cwd: str = "."
    env: tuple = ()
    resources: tuple = ()
    patterns: tuple = ()
    run_all: bool = True
    cancel_grace_s: float = 5.0
    exit_codes: tuple = ()
    done_verb: str = ""  # what the step does to a video, for its result: "Done: 3 videos checked"
    options: tuple = ()  # its run options (options.Option), chosen on the page
    problems: tuple = ()
    matcher: LineMatcher | None = field(default=None, compare=False, repr=False)

    def exit_meaning(self, code: int) -> str | None:
        return dict(self.exit_codes).get(code)

    @property
    def uses_projects_dir(self) -> bool:
        """Whether the step is given the projects folder (it cannot work without it)."""
        return any("projects_dir" in _placeholders(text) for text in (*self.args, *(v for _, v in self.env)))


def _why_not_runnable(path: Path) -> str:
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == 40:  # ELOOP
            return "is a loop of symbolic links"
        if os.path.islink(path):
            return f"is a link to {os.readlink(path)}, which does not exist"
        return f"cannot be read: {exc.strerror}"
    return "is not executable"


class Registry:
    def __init__(self, root: Path, steps: list[Step], venvs: dict[str, Venv], problems: list[str]):
        self.root = root
        self.steps = steps
        self.venvs = venvs
        self.problems = problems  # file-level problems (unreadable JSON, ...)
        self._by_id = {s.id: s for s in steps}

    def get(self, step_id: str) -> Step | None:
        return self._by_id.get(step_id)

    def python_of(self, step: Step) -> Path:
        return self.root / step.venv / "bin" / "python"

    def script_of(self, step: Step) -> Path:
        return self.root / step.script

    def readiness(self, step: Step) -> tuple[list[str], str | None]:
        """What keeps the step from starting now, and the command that fixes it."""
        if step.problems:
            return list(step.problems), None
        problems, fix = [], None
        python = self.python_of(step)
        if not os.access(python, os.X_OK):
            venv = self.venvs.get(step.venv)
            fix = venv.setup if venv else DEFAULT_SETUP
            if os.path.lexists(python):
                # A link that leads nowhere or to itself: the setup alone would keep it.
                fix = f"rm -rf {step.venv} && {fix}"
                problems.append(f"virtualenv {step.venv}/ is broken ({step.venv}/bin/python {_why_not_runnable(python)}); "
                                f"rebuild it with: {fix}")
            else:
                problems.append(f"virtualenv {step.venv}/ is missing ({step.venv}/bin/python not found); "
                                f"create it with: {fix}")
        if not self.script_of(step).is_file():
            problems.append(f"script {step.script} does not exist")
        if not (self.root / step.cwd).is_dir():
            problems.append(f"working folder {step.cwd} does not exist")
        return problems, fix

    def expand(self, step: Step, values: dict) -> tuple[list[str], dict]:
        args = [a.format_map(values) for a in step.args]
        env = {k: v.format_map(values) for k, v in step.env}
        return args, env


def load_registry(path: Path, root: Path) -> Registry:
    root = Path(root)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Registry(root, [], {}, [f"{path}: file not found"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Registry(root, [], {}, [f"{path}: cannot read it as JSON: {exc}"])
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        return Registry(root, [], {}, [f"{path}: expected an object with a \"steps\" list"])

    problems: list[str] = []
    venvs = _load_venvs(data.get("venvs", DEFAULT_VENVS), problems)
    steps: list[Step] = []
    seen: set[str] = set()
    for position, entry in enumerate(data["steps"], 1):
        step = _load_step(entry, position, venvs, root)
        if step.id in seen:
            # The first step keeps the id; this one gets a placeholder one and the problem.
            step = _with_problem(step, f"{step.id}: the id is used by an earlier step", f"step-{position}")
        seen.add(step.id)
        steps.append(step)
    return Registry(root, steps, venvs, problems)


def _load_venvs(raw, problems: list[str]) -> dict[str, Venv]:
    if not isinstance(raw, dict):
        problems.append("venvs: must be an object of name -> {\"setup\": command}")
        return {}
    venvs = {}
    for name, spec in raw.items():
        if not VENV_NAME.match(name):
            problems.append(f"venvs.{name}: not a plain folder name")
            continue
        setup = spec.get("setup", DEFAULT_SETUP) if isinstance(spec, dict) else DEFAULT_SETUP
        venvs[name] = Venv(name, str(setup))
    return venvs


def _with_problem(step: Step, problem: str, new_id: str) -> Step:
    fields = {k: getattr(step, k) for k in step.__dataclass_fields__}
    fields["problems"] = step.problems + (problem,)
    fields["id"] = new_id
    return Step(**fields)


def _load_step(entry, position: int, venvs: dict[str, Venv], root: Path) -> Step:
    if not isinstance(entry, dict):
        return Step(id=f"step-{position}", name=f"step #{position}", problems=(f"step #{position}: not an object",))
    raw_id = entry.get("id")
    sid = raw_id if isinstance(raw_id, str) and STEP_ID.match(raw_id) else f"step-{position}"
    problems: list[str] = []

    def problem(text: str) -> None:
        problems.append(f"{sid}: {text}")

    if sid != raw_id:
        problem(f"id {raw_id!r} must be lower-case letters, digits, '-' or '_'")
    unknown = set(entry) - KNOWN_KEYS
    if unknown:
        problem(f"unknown key(s): {', '.join(sorted(unknown))}")
    name = _text(entry, "name", sid, problem)
    description = _text(entry, "description", "", problem)
    script, venv, cwd = _where(entry, venvs, problem)
    args, env = _command(entry, problem)
    patterns, matcher = _progress(entry, problem)
    resources, run_all, grace, exit_codes = _run_options(entry, problem)
    done_verb = _text(entry, "done_verb", "", problem).strip()
    if len(done_verb) > 40:
        problem("done_verb must be a word or two (\"analysed\", \"checked\")")
        done_verb = ""
    options, option_problems = parse_declarations(entry.get("options", []))
    for text in option_problems:
        problem(text)
    return Step(
        id=sid, name=name or sid, description=description, script=script, venv=venv,
        args=tuple(args), cwd=cwd, env=tuple(sorted(env.items())), resources=tuple(resources),
        patterns=tuple(patterns.items()), run_all=run_all, cancel_grace_s=float(grace),
        exit_codes=tuple(sorted(exit_codes.items())), done_verb=done_verb, options=options,
        problems=tuple(problems),
        matcher=matcher,
    )


def _where(entry: dict, venvs: dict[str, Venv], problem) -> tuple[str, str, str]:
    """The script, its venv and its working folder, all inside the repository."""
    script = _text(entry, "script", "", problem)
    if not script:
        problem("script is missing")
    elif os.path.isabs(script) or ".." in Path(script).parts:
        problem(f"script {script} must be a path inside the repository")
    venv = _text(entry, "venv", "", problem)
    if not venv:
        problem("venv is missing")
    elif venv not in venvs:
        problem(f"venv {venv!r} is unknown (known: {', '.join(sorted(venvs)) or 'none'})")
    cwd = _text(entry, "cwd", ".", problem) or "."
    if os.path.isabs(cwd) or ".." in Path(cwd).parts:
        problem(f"cwd {cwd} must be a folder inside the repository")
    return script, venv, cwd


def _command(entry: dict, problem) -> tuple[list, dict]:
    """Its arguments and extra environment, placeholders checked."""
    args = entry.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        problem("args must be a list of strings")
        args = []
    env = entry.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        problem("env must be an object of string -> string")
        env = {}
    for text in [*args, *env.values()]:
        bad = _bad_placeholder(text)
        if bad:
            problem(f"{bad} in {text!r} (known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})")
    return args, env


def _progress(entry: dict, problem) -> tuple[dict, LineMatcher | None]:
    # A standard set's name (stepkit's rule, the same for every venv) or the
    # step's own regexes; either way the step keeps the regexes it runs with.
    try:
        patterns = resolve_patterns(entry.get("progress_patterns", {}))
        return patterns, LineMatcher(compile_patterns(patterns))
    except (ValueError, PatternError) as exc:
        problem(str(exc))
        return {}, None


def _run_options(entry: dict, problem) -> tuple[list, bool, float, dict]:
    """Resources, "Run all", the cancel grace and what its exit codes mean."""
    resources = entry.get("resources", [])
    if not isinstance(resources, list) or not all(isinstance(r, str) and r for r in resources):
        problem("resources must be a list of names")
        resources = []
    run_all = entry.get("run_all", True)
    if not isinstance(run_all, bool):
        problem("run_all must be true or false")
        run_all = True
    grace = entry.get("cancel_grace_s", 5.0)
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not 0 < grace <= 600:
        problem("cancel_grace_s must be a number of seconds in (0, 600]")
        grace = 5.0
    exit_codes = {}
    raw_codes = entry.get("exit_codes", {})
    if isinstance(raw_codes, dict):
        for code, meaning in raw_codes.items():
            if str(code).lstrip("-").isdigit() and isinstance(meaning, str):
                exit_codes[int(code)] = meaning
            else:
                problem(f"exit_codes.{code}: must map an integer to a text")
    else:
        problem("exit_codes must be an object of code -> meaning")
    return resources, run_all, grace, exit_codes


def _text(entry: dict, key: str, default: str, problem) -> str:
    value = entry.get(key, default)
    if not isinstance(value, str):
        problem(f"{key} must be a string")
        return default
    return value


def _placeholders(text: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}
    except ValueError:
        return set()


def _bad_placeholder(text: str) -> str | None:
    try:
        for _, name, spec, conv in string.Formatter().parse(text):
            if name is not None and name not in PLACEHOLDERS:
                return f"unknown placeholder {{{name}}}"
            if spec or conv:
                return "placeholders take no format spec"
    except ValueError as exc:
        return f"bad braces ({exc})"
    return None
