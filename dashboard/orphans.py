"""Processes a step started and left behind after their parent exited.

A step can start a process in a session of its own with an empty environment
(`Popen(..., start_new_session=True, env={})`) and exit: a signal to the step's
group misses it, its environment has no run tag, and once its parent is gone
the kernel gives it to init, where nobody can trace it to the run. So the
server makes itself a "child subreaper" (Linux's PR_SET_CHILD_SUBREAPER): such
orphans are given to the dashboard instead, as its children, and the run that
just ended can find and end them.

Being a subreaper also makes the dashboard the parent of their zombies, so it
reaps them itself; only orphans (children in another session than the
dashboard's, that it did not start itself), never a child a `subprocess` call
is still waiting for.
"""
import ctypes
import logging
import os
import threading
from typing import Callable, Iterable

import psutil

PR_SET_CHILD_SUBREAPER = 36
REAP_EVERY_S = 1.0


def become_subreaper() -> bool:
    """Whether the kernel took it (Linux 3.4 and later)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class Orphans:
    """The dashboard's children it did not start itself, and their reaping."""

    def __init__(self, own_children: Callable[[], Iterable[int]], logger: logging.Logger):
        self.own_children = own_children  # the pids of the steps' main processes (started with Popen)
        self.log = logger
        self._session = os.getsid(0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _adopted(self, want_zombies: bool) -> list[psutil.Process]:
        try:
            children = psutil.Process().children()
        except psutil.Error:
            return []
        # After the scan, not before: a step started meanwhile is registered
        # (own_children waits for the runner's lock, which its launch holds until
        # then), so its main process, seen in the scan, is never taken for an orphan.
        own = set(self.own_children())
        found = []
        for child in children:
            try:
                if child.pid in own or os.getsid(child.pid) == self._session:
                    continue  # a step's main process, or what a subprocess call of ours waits for
                zombie = child.status() == psutil.STATUS_ZOMBIE
            except (OSError, psutil.Error):
                continue
            if zombie == want_zombies:
                found.append(child)
        return found

    def living(self) -> list[psutil.Process]:
        """Orphans given to the dashboard that still run."""
        return self._adopted(want_zombies=False)

    def reap(self) -> int:
        reaped = 0
        for child in self._adopted(want_zombies=True):
            try:
                if os.waitpid(child.pid, os.WNOHANG)[0]:
                    reaped += 1
            except ChildProcessError:
                pass
        return reaped

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="orphan-reaper", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(REAP_EVERY_S):
            try:
                self.reap()
            except Exception:  # never let the reaper die: zombies would pile up
                self.log.exception("reaping orphaned processes failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.reap()
