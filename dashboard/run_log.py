"""A run's log file: what the step printed, framed by the dashboard's own lines.

The dashboard's lines start with DASHBOARD_PREFIX, so that a reader of the
log (the step's card after a restart) can tell them from the step's output.
"""
import logging
from datetime import datetime
from pathlib import Path

DASHBOARD_PREFIX = "[dashboard] "


class RunLog:
    """The open log file of one live run."""

    def __init__(self, path: Path, logger: logging.Logger):
        self.path = path
        self.log = logger
        # Raises OSError: the caller decides what a log that cannot be opened means.
        self._file = open(path, "a", encoding="utf-8", errors="replace", newline="\n", buffering=1 << 16)

    def write(self, lines: list[str]) -> None:
        # A full disk must not kill the step: its lines still reach the page.
        try:
            self._file.write("\n".join(lines))
            self._file.write("\n")
            self._file.flush()
        except (OSError, ValueError) as exc:
            self.log.warning("cannot write to %s: %s", getattr(self._file, "name", "the run log"), exc)

    def note(self, *texts: str) -> None:
        """Lines of the dashboard's own."""
        self.write([f"{DASHBOARD_PREFIX}{text}" for text in texts])

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


def log_rel_of(step_id: str, run_id: int, started_at: float) -> str:
    """Where a run's log goes, relative to the logs folder: one folder per step."""
    stamp = datetime.fromtimestamp(started_at).strftime("%Y%m%d_%H%M%S")
    return f"{step_id}/run_{run_id:05d}_{stamp}.log"
