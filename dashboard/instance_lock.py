"""One dashboard per history: an exclusive lock beside the database.

A second dashboard on the same database used to run the start-up recovery
(which ends the runs it believes abandoned) before finding its port busy, and
so killed the first one's multi-hour STEP3 run. The lock is taken before
anything else touches the history: the second instance stops at once with one
line naming the first (its pid and address, which the holder writes into the
lock file). The kernel drops an flock when its holder dies, however it dies,
so a dashboard killed with -9 never leaves a stale lock behind.
"""
import fcntl
import json
import os
from pathlib import Path


class AlreadyRunning(RuntimeError):
    """Another live dashboard holds this history; the message names it."""


class LockUnavailable(AlreadyRunning):
    """The lock file cannot be made (a read-only folder, a file where a folder should be)."""


def lock_path_of(db_path: Path) -> Path:
    return Path(str(db_path) + ".lock")


class InstanceLock:
    def __init__(self, db_path: Path):
        self.path = lock_path_of(Path(db_path))
        self._fd: int | None = None

    def acquire(self) -> "InstanceLock":
        """Take the lock or raise AlreadyRunning (or OSError when the folder cannot be written)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise LockUnavailable(f"cannot create {self.path} beside the history database: "
                                  f"{exc.strerror or exc}; give --database a file in a folder you can write") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.pread(fd, 4096, 0))
            os.close(fd)
            raise AlreadyRunning(f"another dashboard ({holder}) already uses the history {self.path.with_suffix('')}; "
                                 f"stop it first, or give this one another --database") from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.describe(url=None)
        return self

    def describe(self, url: str | None) -> None:
        """Say who holds the lock (the address once the port is bound)."""
        if self._fd is None:
            return
        text = json.dumps({"pid": os.getpid(), "url": url}).encode()
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, text, 0)
        except OSError:
            pass  # a full disk: the lock holds anyway, only the description is lost

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def holder_of(db_path: Path) -> str | None:
    """Who holds the history's lock ("pid N, on URL"), or None when nobody
    does: for a start-up that failed earlier (a busy port) to say why."""
    try:
        fd = os.open(lock_path_of(Path(db_path)), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return _describe(os.pread(fd, 4096, 0))
    except OSError:
        return None
    finally:
        os.close(fd)


def _describe(raw: bytes) -> str:
    try:
        data = json.loads(raw.decode() or "{}")
    except (UnicodeDecodeError, ValueError):
        data = {}
    parts = []
    if data.get("pid"):
        parts.append(f"pid {data['pid']}")
    if data.get("url"):
        parts.append(f"on {data['url']}")
    return ", ".join(parts) or "pid unknown"
