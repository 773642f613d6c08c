"""A live run's row in the history: its progress checkpoints and its end."""
import logging
import sqlite3

from .history import RunStore
from .run import Run
from .status import RunStatus


class RunRecord:
    def __init__(self, store: RunStore, logger: logging.Logger):
        self.store = store
        self.log = logger

    def checkpoint(self, run: Run) -> None:
        """The counters so far: after a crash, the history shows how far the run got."""
        self._update(run, run.checkpoint_fields())

    def end(self, run: Run, status: RunStatus, returncode: int | None, reason: str) -> None:
        self._update(run, run.finish(status, returncode, reason))
        self.log.info("run %s of %s ended: %s (%s)", run.id, run.step.id, status.value, reason)

    def _update(self, run: Run, fields: dict) -> None:
        # The history must not take the run down with it (a locked or closed database).
        try:
            self.store.update(run.id, **fields)
        except sqlite3.Error as exc:
            self.log.error("run %s of %s: cannot record %s in the history: %s",
                           run.id, run.step.id, ", ".join(fields), exc)
