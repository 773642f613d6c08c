"""A run's log file: what the step printed, framed by the dashboard's own lines.

The dashboard's lines start with DASHBOARD_PREFIX, so that a reader of the
log (the step's card after a restart) can tell them from the step's output.
"""
import logging
import re
from datetime import datetime
from pathlib import Path

from . import logfiles

DASHBOARD_PREFIX = "[dashboard] "


class RunLog:
    """The open log file of one live run."""

    def __init__(self, path: Path, logger: logging.Logger):
        self.path = path
        self.log = logger
        # Raises OSError: the caller decides what a log that cannot be opened means.
        self._file = open(path, "a", encoding="utf-8", errors="replace", newline="\n", buffering=1 << 16)

    def write(self, lines: list[str]) -> OSError | None:
        """The error, if the lines could not be written (the caller decides what it means)."""
        # A full disk must not kill the step: its lines still reach the page.
        try:
            self._file.write("\n".join(lines))
            self._file.write("\n")
            self._file.flush()
        except (OSError, ValueError) as exc:
            self.log.warning("cannot write to %s: %s", getattr(self._file, "name", "the run log"), exc)
            return exc if isinstance(exc, OSError) else OSError(str(exc))
        return None

    def note(self, *texts: str) -> OSError | None:
        """Lines of the dashboard's own."""
        return self.write([f"{DASHBOARD_PREFIX}{text}" for text in texts])

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass


def append_note(logs_dir: Path, log_rel: str | None, text: str) -> None:
    """Add a dashboard line to the log of a run that is no longer followed."""
    if not log_rel:
        return
    path = logs_dir / log_rel
    if path.is_file() and not path.is_symlink():
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{DASHBOARD_PREFIX}{text}\n")


_ENDED = re.compile(r"^" + re.escape(DASHBOARD_PREFIX) + r"ended: (\w+) \((.*)\) after [0-9.]+ s$")


def end_in_log(logs_dir: Path, log_rel: str | None) -> tuple[str, str] | None:
    """(status, reason) of the "ended:" line the follower wrote last in a run's
    log, if it did: the run's end when the history could not take it."""
    if not log_rel:
        return None
    try:
        with logfiles.open_log(logs_dir, log_rel).file as f:
            lines = logfiles.tail(f, 3)["lines"]
    except (OSError, logfiles.UnsafePath):
        return None
    for line in reversed(lines):
        found = _ENDED.match(line)
        if found:
            return found.group(1), found.group(2)
    return None


def log_rel_of(step_id: str, run_id: int, started_at: float) -> str:
    """Where a run's log goes, relative to the logs folder: one folder per step."""
    stamp = datetime.fromtimestamp(started_at).strftime("%Y%m%d_%H%M%S")
    return f"{step_id}/run_{run_id:05d}_{stamp}.log"
