"""One execution of a step: the state its reader thread writes and the others read.

Every field is read and written under ``Run.lock``: the reader thread applies
output lines, the API reads snapshots, a cancel notes the processes to signal.
"""
import collections
import signal
import threading
import time

from . import preview, procs
from .eta import Eta
from .progress import ProgressState
from .registry import Step
from .run_view import live_view
from .status import REASON_CANCELLED, REASON_INTERRUPTED, RunStatus


class Run:
    """One execution of a step; its state is read by other threads under ``lock``."""

    LAST_LINES = 10
    FAILURES_SHOWN = 5
    ERROR_PREFIX = "ERROR:"

    def __init__(self, run_id: int, step: Step, started_at: float, trigger: str, sequence_id, log_rel: str,
                 projects_dir: str | None = None, options: dict | None = None):
        self.id = run_id
        self.step = step
        self.started_at = started_at
        self.trigger = trigger
        self.sequence_id = sequence_id
        self.log_rel = log_rel
        self.projects_dir = projects_dir  # the folder the step works on, as recorded in the history
        self.options = options or {}  # every declared option's value (options.resolve), as recorded
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.status = RunStatus.RUNNING
        self.ended_at: float | None = None
        self.return_code: int | None = None
        self.reason: str | None = None
        self.progress = ProgressState()
        self.last_lines: collections.deque = collections.deque(maxlen=self.LAST_LINES)
        self.error_line: str | None = None  # the step's first ERROR: line: what its result says
        self.eta = Eta()
        self.lines = 0
        self.pid: int | None = None
        self.cancel_requested_at: float | None = None
        self.interrupting = False
        self.reaped = False
        self.escapees: list = []
        # The most bytes found waiting in the pipe at one read, against its size:
        # below the size, the child never found the pipe full (never blocked).
        self.max_pending = 0
        self.pipe_size: int | None = None
        # Counts changes, so that a page can tell a late answer from a fresher event.
        self.version = 0

    def snapshot(self, now: float | None = None) -> dict:
        """The run's JSON (see run_view: the same keys as a run from the history)."""
        return live_view(self, now)

    # ---- written by the reader thread -------------------------------------

    def take_lines(self, lines: list[str]) -> None:
        """Apply a batch of output lines to the progress, the card's lines and the result's words."""
        matcher = self.step.matcher
        kept = []
        with self.lock:
            for line in lines:
                found = matcher.match(line) if matcher is not None else None
                if found:
                    self.progress.apply(*found)
                if not (found and found[0] == "progress"):
                    kept.append(line)  # the card shows the meaningful lines, not every frame count
                if self.error_line is None and line.startswith(self.ERROR_PREFIX):
                    self.error_line = preview.shorten(line[len(self.ERROR_PREFIX):].strip(), 300)
            self.eta.observe(time.monotonic(), self.progress.fraction)
            self.last_lines.extend(preview.shorten(line) for line in kept[-self.LAST_LINES:])
            self.lines += len(lines)
            self.version += 1

    def cancel_requested(self) -> float | None:
        """When a stop was asked for (monotonic time), or None."""
        with self.lock:
            return self.cancel_requested_at

    def note_escapees(self, found: list) -> bool:
        """Whether any of ``found`` was new."""
        with self.lock:
            return self._add_escapees_locked(found)

    def _add_escapees_locked(self, found: list) -> bool:
        known = {p.pid for p in self.escapees}
        new = [p for p in found if p.pid not in known]
        self.escapees.extend(new)
        return bool(new)

    def known_escapees(self) -> list:
        with self.lock:
            return list(self.escapees)

    def running_escapees(self) -> list:
        with self.lock:
            return [p for p in self.escapees if procs.running(p)]

    def outcome(self, returncode: int) -> tuple[RunStatus, str]:
        """The status and reason of a run whose child exited with ``returncode``."""
        with self.lock:
            interrupting, cancelled = self.interrupting, self.cancel_requested_at is not None
        if interrupting:
            return RunStatus.INTERRUPTED, REASON_INTERRUPTED
        if cancelled:
            return RunStatus.CANCELLED, REASON_CANCELLED
        reason = procs.describe_exit(returncode)
        meaning = self.step.exit_meaning(returncode)
        if meaning:
            reason = f"{reason} ({meaning})"
        return (RunStatus.SUCCEEDED if returncode == 0 else RunStatus.FAILED), reason

    # ---- a stop asked for by the user or by the server ---------------------

    def request_stop(self, interrupt: bool) -> bool:
        """Mark the run as stopping and signal its processes; False if there is
        nothing to stop (ended, or already asked).

        Under the lock, so the child cannot be reaped meanwhile: its pid, hence
        its group id, cannot belong to another process while it is signalled.
        """
        with self.lock:
            if self.reaped or self.status.finished:
                return False
            if not interrupt and self.pid is not None and procs.exited(self.pid):
                return False  # it has ended on its own: its outcome is its exit code, not a cancel
            if interrupt:
                self.interrupting = True
            if self.cancel_requested_at is not None:
                return False
            self.cancel_requested_at = time.monotonic()
            self.version += 1
            # Descendants that left the group (setsid) would escape killpg:
            # note them now, while the tree is still attached to the child.
            self._add_escapees_locked(procs.escaped_descendants(self.pid))
            procs.signal_tree(self.pid, self.escapees, signal.SIGTERM)
        return True

    # ---- the history's view -------------------------------------------------

    def checkpoint_fields(self) -> dict:
        with self.lock:
            return self._counters_locked(time.time())

    def finish(self, status: RunStatus, returncode: int | None, reason: str) -> dict:
        """Set the final state; returns the history fields that record it."""
        ended = time.time()
        with self.lock:
            if status is RunStatus.SUCCEEDED:
                self.progress.complete()
            self.status = status
            self.version += 1
            self.ended_at = ended
            self.return_code = returncode
            self.reason = reason
            p = self.progress
            return dict(status=status.value, ended_at=ended, return_code=returncode, reason=reason,
                        **self._counters_locked(ended),
                        failures=[vars(f) for f in p.failures[-self.FAILURES_SHOWN:]],
                        last_success=None if p.last_success is None else vars(p.last_success))

    def _counters_locked(self, now: float) -> dict:
        p = self.progress
        return dict(total=p.total, succeeded=p.succeeded, failed=p.failed, skipped=p.skipped,
                    fraction=p.fraction, current_item=p.item, lines=self.lines, updated_at=now,
                    scenes=p.scenes, error_line=self.error_line)
