"""Reading log files safely and fast.

Only files inside the logs folder are served. A tail is read backwards from the
end of the file in blocks, so a 1 GB log opens as fast as a small one; a filter
scans backwards too, up to a byte budget, and says when it stopped early.
"""
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

from .safe_open import OutsideRoot, open_inside

BLOCK = 64 * 1024
MAX_TAIL = 10_000
DEFAULT_SCAN_BUDGET = 32 * 1024 * 1024
MAX_FOLLOW_BYTES = 1024 * 1024
MAX_LINE_CHARS = 4000  # per line on a page or in the viewer's JSON
LEVELS = ("all", "warning", "error")

# Child lines follow the progress protocol (WARNING:/ERROR:/FAILED: prefixes);
# the app log has "date time LEVEL name: message".
_CHILD_LEVEL = re.compile(r"^(?:\[dashboard\] )?(WARNING|ERROR|FAILED|CRITICAL|Traceback)\b")
_APP_LEVEL = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:[.,]\d+)? (WARNING|ERROR|CRITICAL)\b")


class UnsafePath(ValueError):
    """The requested path is not a file inside the logs folder."""


@dataclass
class OpenedLog:
    """A log file opened once, and its name in the logs folder: everything shown
    or sent is read from this file, never from the path again."""
    file: BinaryIO
    name: str

    def close(self) -> None:
        self.file.close()


def open_log(logs_dir: Path, requested: str) -> OpenedLog:
    """``requested`` opened for reading if it is a regular file inside ``logs_dir``
    (checked on what was opened: see safe_open). The name is taken as the
    request gave it, decoded once by Flask, so a listed ``a%41.log`` opens."""
    try:
        return OpenedLog(open_inside(logs_dir, requested), requested)
    except OutsideRoot as exc:
        raise UnsafePath(str(exc)) from None
    except IsADirectoryError:
        raise FileNotFoundError(requested) from None


def shorten_line(line: str, limit: int = MAX_LINE_CHARS) -> str:
    """A line as a page shows it: a step that printed megabytes without a newline
    must not make a page of megabytes (the download stays whole)."""
    if len(line) <= limit:
        return line
    return f"{line[:limit]} … [{len(line) - limit:,} more characters: download the file for the whole line]"


def level_of(line: str) -> str:
    m = _CHILD_LEVEL.match(line) or _APP_LEVEL.match(line)
    if not m:
        return "info"
    return "warning" if m.group(1) == "WARNING" else "error"


def make_filter(text: str | None, level: str | None):
    """A predicate on lines, or None when nothing is filtered."""
    text = (text or "").casefold()
    level = level if level in LEVELS else "all"
    if not text and level == "all":
        return None

    def keep(line: str) -> bool:
        if text and text not in line.casefold():
            return False
        if level == "all":
            return True
        found = level_of(line)
        return found == "error" if level == "error" else found in ("warning", "error")

    return keep


Source = Union[Path, BinaryIO]  # a path, or a file already opened by open_log


@contextmanager
def _reading(source: Source):
    if isinstance(source, (str, Path)):
        with open(source, "rb") as f:
            yield f
    else:
        yield source


def tail(path: Source, count: int, keep=None, scan_budget: int = DEFAULT_SCAN_BUDGET, now: float | None = None) -> dict:
    """The last ``count`` lines of ``path`` (those ``keep`` accepts), read from the end.

    ``end`` is the offset a follower goes on from. A last line with no newline
    is left out while the file is still being written (modified in the last few
    seconds), so that a follower does not show it twice.
    ``complete`` is False when a filtered scan stopped at ``scan_budget`` bytes
    before reaching the start of the file.
    """
    count = max(1, min(int(count), MAX_TAIL))
    with _reading(path) as f:
        size = f.seek(0, os.SEEK_END)
        scan_end = end = size
        if size:
            f.seek(size - 1)
            if f.read(1) == b"\n":
                scan_end = size - 1
            elif _recently_modified(f, now):
                scan_end = end = _after_last_newline(f, size)
                scan_end = max(0, end - 1)
        found: list[str] = []
        pos, carry, scanned = scan_end, b"", 0
        while pos > 0 and len(found) < count and scanned < scan_budget:
            start = max(0, pos - BLOCK)
            f.seek(start)
            block = f.read(pos - start) + carry
            scanned += pos - start
            pos = start
            parts = block.split(b"\n")
            # The first part may be the end of a line that began in an earlier block.
            carry = parts.pop(0) if pos > 0 else b""
            for raw in reversed(parts):
                line = raw.decode("utf-8", errors="replace")
                if keep is None or keep(line):
                    found.append(line)
                    if len(found) >= count:
                        break
    found.reverse()
    return {"lines": found, "end": end, "size": size, "complete": pos == 0 or len(found) >= count}


def _recently_modified(f, now: float | None, seconds: float = 5.0) -> bool:
    now = time.time() if now is None else now
    return now - os.fstat(f.fileno()).st_mtime < seconds


def _after_last_newline(f, size: int) -> int:
    pos = size
    while pos > 0:
        start = max(0, pos - BLOCK)
        f.seek(start)
        cut = f.read(pos - start).rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        pos = start
    return 0


def read_after(path: Source, offset: int, keep=None, max_bytes: int = MAX_FOLLOW_BYTES) -> dict:
    """Complete lines written after ``offset``; ``reset`` when the file shrank (rotated)."""
    with _reading(path) as f:
        size = f.seek(0, os.SEEK_END)
        if offset > size:
            return {"lines": [], "end": offset, "size": size, "reset": True}
        skipped = max(0, size - offset - max_bytes)
        start = offset + skipped
        f.seek(start)
        data = f.read(size - start)
    cut = data.rfind(b"\n")
    if cut < 0:
        return {"lines": [], "end": start if not skipped else offset, "size": size, "reset": False, "skipped": 0}
    body = data[: cut + 1]
    if skipped:
        # We jumped into the middle of a line: drop up to the first newline.
        first = body.find(b"\n")
        body = body[first + 1:]
    lines = body.decode("utf-8", errors="replace").split("\n")[:-1]
    if keep is not None:
        lines = [line for line in lines if keep(line)]
    return {"lines": lines, "end": start + cut + 1, "size": size, "reset": False, "skipped": skipped}


def list_files(logs_dir: Path, limit: int = 500) -> list[dict]:
    """Log files under ``logs_dir`` (symlinks skipped), newest first."""
    root = Path(logs_dir)
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for name in filenames:
            full = os.path.join(dirpath, name)
            if os.path.islink(full) or not (name.endswith(".log") or ".log." in name):
                continue
            try:
                st = os.stat(full)
            except OSError:
                continue
            files.append({"path": os.path.relpath(full, root).replace(os.sep, "/"), "size": st.st_size, "mtime": st.st_mtime})
    files.sort(key=lambda f: f["mtime"], reverse=True)
    return files[:limit]
