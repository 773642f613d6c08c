"""The thread that follows one run: its output, its exit, and what it leaves behind.

The follower reads the child's output, applies the step's progress patterns,
writes the run's log, and ends the run. The child is not reaped until its
process group has been cleaned up, so that its pid, and therefore its group
id, cannot be reused by an unrelated process while the runner may still
signal that group.
"""
import logging
import os
import selectors
import signal
import subprocess
import time
from typing import Callable

from . import procs
from .bus import EventBus, topic_of
from .leftovers import Leftovers
from .lines import LineSplitter
from .run import Run
from .run_log import RunLog
from .run_record import RunRecord
from .status import RunStatus

# (run, status, return code, reason): called once, after the child is reaped.
EndCallback = Callable[[Run, RunStatus, int | None, str], None]


class Follower:
    """Follows one run's child until it and everything it started are gone."""

    READ_SIZE = 1 << 21
    # A read shorter than this emptied the pipe: go back to waiting on it.
    SHORT_READ = 1 << 16
    POLL_S = 0.1
    TREE_CHECK_S = 1.0

    def __init__(self, run: Run, proc: subprocess.Popen, log: RunLog, record: RunRecord, bus: EventBus,
                 logger: logging.Logger, checkpoint_s: float, on_end: EndCallback, adopted=None):
        self.run = run
        self.proc = proc
        self.runlog = log
        self.record = record
        self.bus = bus
        self.log = logger
        self.checkpoint_s = checkpoint_s
        self.on_end = on_end
        self.fd = proc.stdout.fileno()
        self.splitter = LineSplitter()
        self.grace = run.step.cancel_grace_s
        self.eof = False
        self.exit_seen: float | None = None  # monotonic time the child was seen exited
        self.leftovers = Leftovers(run, log, logger, self.grace, adopted=adopted)
        self.cancel_killed = False
        self.last_checkpoint = self.last_tree_check = time.monotonic()
        self.last_exit_check = 0.0

    def follow(self) -> None:
        """The thread's body: returns once the run has ended, whatever happens."""
        os.set_blocking(self.fd, False)
        selector = selectors.DefaultSelector()
        selector.register(self.fd, selectors.EVENT_READ)
        try:
            while self._turn(selector):
                pass
            self.leftovers.finish()
            self._consume(self.splitter.close())
        except Exception:  # the run must end whatever happens here
            self.log.exception("run %s of %s: reader failed", self.run.id, self.run.step.id)
            procs.signal_group(self.proc.pid, signal.SIGKILL)
        finally:
            selector.close()
            self._end()

    def _turn(self, selector: selectors.BaseSelector) -> bool:
        """One pass of the loop; False once reading is over."""
        if not self.eof and selector.select(self.POLL_S):
            self._read_output()
        now = time.monotonic()
        self._detect_exit(now)
        self._escalate_cancel(now)
        if self.exit_seen is not None:
            self.leftovers.check(now)
            # A descendant outside the group may hold the pipe open: stop reading.
            if self.eof or now - self.exit_seen > self.leftovers.settle_s + self.grace + 1:
                return False
        self._note_escapees(now)
        self._checkpoint(now)
        return True

    # ---- output --------------------------------------------------------------

    def _read_output(self) -> None:
        """Read what is waiting in the pipe, up to the point it is drained."""
        run = self.run
        while True:
            try:
                data = os.read(self.fd, self.READ_SIZE)
            except BlockingIOError:
                return
            if not data:
                self.eof = True
                return
            if len(data) > run.max_pending:
                run.max_pending = len(data)
            self._consume(self.splitter.feed(data))
            if len(data) < self.SHORT_READ:
                return

    def _consume(self, lines: list[str]) -> None:
        if not lines:
            return
        self.run.take_lines(lines)
        self.runlog.write(lines)
        self.bus.publish(topic_of(self.run.step.id))

    # ---- the child's exit and a cancel ---------------------------------------

    def _detect_exit(self, now: float) -> None:
        if self.exit_seen is not None:
            return
        if self.eof:
            # The pipe is closed: the child is about to exit, wait for it.
            procs.wait_exited(self.proc.pid, self.POLL_S)
        if self.eof or now - self.last_exit_check >= self.POLL_S:
            self.last_exit_check = now
            if procs.exited(self.proc.pid):
                self.exit_seen = now
                self.leftovers.exited(now)

    def _escalate_cancel(self, now: float) -> None:
        """SIGKILL once the grace after SIGTERM is over and the child is still there."""
        if self.exit_seen is not None or self.cancel_killed:
            return
        cancel_at = self.run.cancel_requested()
        if cancel_at is not None and now - cancel_at >= self.grace:
            self.cancel_killed = True
            self.runlog.note(f"still running {self.grace:g} s after SIGTERM: SIGKILL sent")
            procs.signal_tree(self.proc.pid, self.run.known_escapees(), signal.SIGKILL)

    # ---- what the child leaves behind ------------------------------------------

    def _note_escapees(self, now: float) -> None:
        if self.exit_seen is not None or now - self.last_tree_check < self.TREE_CHECK_S:
            return
        # Note descendants that left the group (setsid daemons) while the tree
        # still shows them: once the child exits they are orphans nobody can trace.
        self.last_tree_check = now
        if self.run.note_escapees(procs.escaped_descendants(self.run.pid)):
            self.record.track(self.run)  # in the history: found again after a crash of the server

    # ---- progress in the history, and the end ------------------------------------

    def _checkpoint(self, now: float) -> None:
        if now - self.last_checkpoint >= self.checkpoint_s:
            self.last_checkpoint = now
            self.record.checkpoint(self.run)

    def _end(self) -> None:
        run, proc = self.run, self.proc
        with run.lock:
            proc.wait()
            run.reaped = True
        proc.stdout.close()
        status, reason = run.outcome(proc.returncode)
        self.runlog.note(f"ended: {status.value} ({reason}) after {time.time() - run.started_at:.1f} s")
        self.runlog.close()
        self.on_end(run, status, proc.returncode, reason)
