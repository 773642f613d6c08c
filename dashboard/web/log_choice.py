"""Which file the Logs page shows, from its query, and what it says when it shows none.

The page's source select must always name what is shown (or what was asked
for and not found): a run that is not in the history is not "app.log", and
"Other files in logs/" with no file named shows the newest one instead of an
error beside a select that already seems to name a file.
"""
from dataclasses import dataclass

from .. import logfiles
from ..service import APP_LOG, Dashboard
from . import parse_id

FILES = "_files"      # the source select's "Other files in logs/"
UNKNOWN = "_unknown"  # the source select's "a run that is not in the history"


@dataclass
class LogChoice:
    step_id: str = ""                # the source select's value: "" (app.log), a step id, FILES or UNKNOWN
    run_id: int | None = None
    run_arg: str = ""                # the run asked for, as written
    path: str = ""                   # the file chosen in logs/, when the source is FILES
    file: logfiles.OpenedLog | None = None  # what is shown, opened (the page reads and closes it)
    source: dict | None = None       # how the download link and the follower name it
    error: str | None = None         # something asked for that cannot be shown
    notice: str | None = None        # nothing to show, and nothing wrong


def choose(svc: Dashboard, step_id: str, run_arg: str, path_arg: str) -> LogChoice:
    """?run=ID (a run's log), ?path=REL (a file in logs/), ?step=ID (its latest run), else app.log."""
    if run_arg:
        return _run(svc, run_arg)
    if step_id == FILES or path_arg:
        return _file(svc, path_arg)
    if step_id and svc.registry.get(step_id):
        latest = svc.store.latest(step_id)
        if latest is None:
            return LogChoice(step_id=step_id, notice="No run of this step yet.")
        return _run(svc, str(latest["id"]))
    choice = _file(svc, APP_LOG)
    choice.step_id, choice.path = "", ""
    return choice


def _run(svc: Dashboard, run_arg: str) -> LogChoice:
    run_id = parse_id(run_arg)
    if run_id is None:
        shown = run_arg if len(run_arg) <= 40 else run_arg[:40] + "…"
        return LogChoice(step_id=UNKNOWN, run_arg=shown, error=f"There is no run “{shown}”: a run is a number.")
    row = svc.store.get(run_id)
    if row is None:
        return LogChoice(step_id=UNKNOWN, run_id=run_id, run_arg=run_arg,
                         error=f"There is no run #{run_id} in the history.")
    choice = LogChoice(step_id=row["step_id"], run_id=run_id, run_arg=run_arg)
    try:
        choice.file = svc.open_run_log(run_id)
    except logfiles.UnsafePath as exc:
        choice.error = f"The log of run #{run_id} is refused: {exc}."
    except FileNotFoundError:
        choice.error = f"The log file of run #{run_id} ({row['log_path']}) is no longer in the logs folder."
    except OSError as exc:
        choice.error = f"The log file of run #{run_id} cannot be read: {exc.strerror or exc}."
    else:
        if choice.file is None:
            choice.error = f"Run #{run_id} has no log file: it could not be started (see its reason in the History)."
        else:
            choice.source = {"run": run_id}
    return choice


def _file(svc: Dashboard, path_arg: str) -> LogChoice:
    choice = LogChoice(step_id=FILES, path=path_arg)
    if not path_arg:
        files = logfiles.list_files(svc.logs_dir)
        if not files:
            choice.notice = "There is no log file in the logs folder yet."
            return choice
        choice.path = files[0]["path"]  # the newest, so that the file select names what is shown
    try:
        choice.file = logfiles.open_log(svc.logs_dir, choice.path)
        choice.source = {"path": choice.path}
    except logfiles.UnsafePath as exc:
        choice.error = f"Refused: {exc}."
    except FileNotFoundError:
        choice.error = f"There is no file {choice.path} in the logs folder."
    except OSError as exc:
        choice.error = f"The file {choice.path} cannot be read: {exc.strerror or exc}."
    return choice


def empty_text(text_filter: str, level: str, complete: bool) -> str:
    """What the page says instead of an empty box."""
    subject = {"warning": "no warning or error", "error": "no error"}.get(level, "no line")
    if not text_filter and subject == "no line":
        return "This log is empty so far."
    contains = f" contains “{text_filter}”" if text_filter else ""
    where = "in this file" if complete else "in the part of this large file searched"
    return f"No matching lines: {subject}{contains} {where}."
