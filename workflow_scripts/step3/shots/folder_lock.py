"""One STEP3 run per projects folder.

Two dashboards with separate histories (or a dashboard and a terminal) could
run STEP3 on the same folder at once: both succeeded, each at half speed,
writing the same result files (and, on a GPU machine, two models on one
card). A run holds an flock on the folder itself (on the file, when one video
is given): nothing is written into the user's folder, and the kernel drops
the lock when the run ends, however it ends. A second run stops at once with
one line naming the holder (its pid, from /proc/locks) instead of waiting an
unknown time behind it.
"""
import fcntl
import os
from pathlib import Path
from typing import Optional


class FolderBusy(RuntimeError):
    """Another STEP3 run is analysing this folder; the message says which."""


class HeldLock:
    """An flock held through an open descriptor, dropped by ``release`` (or
    by the kernel when the process ends)."""
    _fd: Optional[int] = None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class FolderLock(HeldLock):
    def __init__(self, target: Path):
        self.target = Path(target)

    def acquire(self) -> "FolderLock":
        """Raise FolderBusy when another process holds the lock; a folder that
        cannot be opened is left to the driver's own checks (not locked)."""
        try:
            fd = os.open(self.target, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return self
        try:
            holder = lock_or_holder(fd)
        except OSError:
            os.close(fd)  # a file system without flock: run unlocked, as before
            return self
        if holder is not None:
            os.close(fd)
            raise FolderBusy(f"{self.target} is being analysed by another STEP3 run ({holder}); "
                             f"run this one when it has ended")
        self._fd = fd
        return self

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_or_holder(fd: int) -> Optional[str]:
    """Take an exclusive flock on ``fd`` without waiting: None when taken, else
    who has it ("pid N", or "another process" when /proc/locks does not say).
    OSError when the file system has no flock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        holder = _holder_pid(fd)
        return f"pid {holder}" if holder else "another process"


def _holder_pid(fd: int) -> Optional[int]:
    """The pid /proc/locks gives for an flock on the same inode, if any."""
    st = os.fstat(fd)
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            for line in f:
                parts = line.split()
                # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
                if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == wanted and parts[4].isdigit():
                    return int(parts[4])
    except OSError:
        pass
    return None
