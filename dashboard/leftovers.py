"""What a step leaves running once its main process has exited.

A step's normal exit can leave a process behind for a moment: Python's
multiprocessing starts a resource tracker (STEP3's spawned decoder processes
do), which stays in the step's process group and exits by itself only once it
has read the end of its pipe from the main process, that is after the main
process has exited. Calling it "left behind" made a warning of every STEP3
run; so the group is given SETTLE_S to empty by itself. Whatever is still
there then is really left behind: warned about, sent SIGTERM, and SIGKILL
after a grace.
"""
import logging
import signal
import time

import psutil

from . import procs
from .launcher import RUN_TAG_ENV, run_tag
from .run import Run
from .run_log import RunLog


class Leftovers:
    """The processes of one run that outlive its main process."""

    SETTLE_S = 2.0
    CHECK_S = 0.05
    KILL_AFTER_S = 2.0

    def __init__(self, run: Run, runlog: RunLog, logger: logging.Logger, grace: float,
                 settle_s: float | None = None, adopted=None):
        self.run = run
        self.runlog = runlog
        self.log = logger
        self.grace = grace
        self.settle_s = self.SETTLE_S if settle_s is None else settle_s
        self.settle_until: float | None = None  # set once the main process has exited
        self.settled = False  # the group emptied by itself, or what stayed was signalled
        self.kill_at: float | None = None
        # What the dashboard, as a subreaper, was given of this run (orphans.py); None: not one.
        self.adopted = adopted

    def exited(self, now: float) -> None:
        """The main process has exited: find the daemons that left the group, start the wait."""
        run = self.run
        in_group = {p.pid for p in procs.group_members(run.pid)}
        # Daemons that left the group and whose parent is gone: found by the run's tag.
        run.note_escapees([p for p in procs.tagged(RUN_TAG_ENV, run_tag(run.id))
                           if p.pid != run.pid and p.pid not in in_group])
        # And those with no tag left (an emptied environment), given to the dashboard when their parent exited.
        if self.adopted is not None:
            run.note_escapees(self.adopted())
        self.settle_until = now + self.settle_s
        self.check(now)

    def check(self, now: float) -> None:
        """One look: nothing left, still waiting, or the moment to signal what stayed."""
        if self.settle_until is None:
            return
        if self.kill_at is not None:
            if now >= self.kill_at:
                self._kill()
            return
        if self.settled:
            return
        left = self._remaining()
        if not left:
            self.settled = True
        elif now >= self.settle_until:
            self.settled = True
            self._end(left)

    def finish(self) -> None:
        """Once the output is over: wait for the settle, then for what was signalled to go."""
        if self.settle_until is None:
            return
        while not self.settled:
            time.sleep(self.CHECK_S)
            self.check(time.monotonic())
        # Leftovers that closed their output give no EOF to wait for: watch them.
        while self.kill_at is not None and time.monotonic() < self.kill_at and self._remaining():
            time.sleep(self.CHECK_S)
        if self.kill_at is not None:
            self._kill()

    def _remaining(self) -> list[psutil.Process]:
        return procs.group_members(self.run.pid) + self.run.running_escapees()

    def _end(self, left: list[psutil.Process]) -> None:
        run = self.run
        described = ", ".join(f"{p.pid} ({_name(p)})" for p in left)
        self.log.warning("run %s of %s: ending %d process(es) left behind by the step: %s",
                         run.id, run.step.id, len(left), described)
        self.runlog.note(f"the step left {len(left)} process(es) running {self.settle_s:g} s after it exited: "
                         f"{described}; SIGTERM sent")
        procs.signal_tree(run.pid, run.known_escapees(), signal.SIGTERM)
        self.kill_at = time.monotonic() + min(self.grace, self.KILL_AFTER_S)

    def _kill(self) -> None:
        procs.signal_tree(self.run.pid, self.run.known_escapees(), signal.SIGKILL)
        self.kill_at = None


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return "gone"
