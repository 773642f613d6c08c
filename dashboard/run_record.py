"""A live run's row in the history: its progress checkpoints and its end.

The end of a run must never be lost. When the database cannot take it (held
locked by another program past SQLite's 10 s busy wait, a full disk), the end
is kept and written again every few seconds, in a thread of its own, until
it goes in; the run's log has the same "ended:" line, which the start-up
recovery reads if the dashboard stops before the database takes it.
A checkpoint that fails is only skipped: the next one says more.
"""
import logging
import sqlite3
import threading

import psutil

from .history import RunStore
from .launcher import run_tag
from .run import Run
from .status import RunStatus

RETRY_S = 2.0


class RunRecord:
    def __init__(self, store: RunStore, logger: logging.Logger, retry_s: float = RETRY_S):
        self.store = store
        self.log = logger
        self.retry_s = retry_s
        self._pending: dict[int, tuple[Run, dict]] = {}  # run id -> (run, its final fields)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def checkpoint(self, run: Run) -> None:
        """The counters so far: after a crash, the history shows how far the run got."""
        try:
            self.store.update(run.id, **run.checkpoint_fields())
        except sqlite3.Error as exc:
            self.log.warning("run %s of %s: progress not recorded in the history: %s", run.id, run.step.id, exc)

    def track(self, run: Run) -> None:
        """How to find the run's processes once this server is gone: its tag and
        the processes that left its group (pid and start time, so that a reused
        pid is never taken for one of them)."""
        escapees = []
        for proc in run.known_escapees():
            try:
                escapees.append([proc.pid, proc.create_time()])
            except psutil.Error:
                continue
        try:
            self.store.update(run.id, tracking={"tag": run_tag(run.id), "escapees": escapees})
        except sqlite3.Error as exc:
            self.log.warning("run %s of %s: its processes are not recorded in the history: %s",
                             run.id, run.step.id, exc)

    def end(self, run: Run, status: RunStatus, returncode: int | None, reason: str) -> None:
        self.save_end(run, run.finish(status, returncode, reason))

    def save_end(self, run: Run, fields: dict) -> None:
        """Write a finished run's final fields (``run.finish``'s), now or, failing that, later."""
        self.log.info("run %s of %s ended: %s (%s)", run.id, run.step.id, fields["status"], fields["reason"])
        try:
            self.store.update(run.id, **fields)
        except sqlite3.Error as exc:
            self.log.error("run %s of %s: the history cannot take its end now (%s); trying again every %g s",
                           run.id, run.step.id, exc, self.retry_s)
            self._keep(run, fields)

    def pending(self) -> list[int]:
        with self._lock:
            return sorted(self._pending)

    def _keep(self, run: Run, fields: dict) -> None:
        with self._lock:
            self._pending[run.id] = (run, fields)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._retry_loop, name="history-retry", daemon=True)
                self._thread.start()
        self._wake.set()

    def _retry_loop(self) -> None:
        while True:
            self._wake.wait(self.retry_s)
            self._wake.clear()
            if not self._flush() or self._closed:
                with self._lock:
                    if not self._pending or self._closed:
                        self._thread = None
                        return

    def _flush(self) -> bool:
        """Write what is pending; True while something is still pending."""
        with self._lock:
            pending = list(self._pending.items())
        for run_id, (run, fields) in pending:
            try:
                self.store.update(run_id, **fields)
            except sqlite3.Error:
                continue
            with self._lock:
                self._pending.pop(run_id, None)
            self.log.info("run %s of %s: its end is now recorded in the history", run_id, run.step.id)
        with self._lock:
            return bool(self._pending)

    def close(self) -> None:
        """One last attempt; what still cannot be written is said (the run's log keeps its end)."""
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(15)
        self._flush()
        for run_id in self.pending():
            self.log.error("run %s: its end could not be recorded in the history; its log says it, and the "
                           "next start reads it from there", run_id)
