"""The progress lines of docs/progress-protocol.md: the emitter a step prints
them with, and the standard patterns the dashboard reads them with.

Both sides live here so that they cannot drift apart: ``config/workflow.json``
names a set (``"progress_patterns": "video-batch"``) instead of repeating its
regular expressions, and the tests of every venv check the emitter's lines
against the same set.
"""
import sys
import threading
import time
from typing import Optional, TextIO

# Frame progress is reported when it moved by this share of the item, or
# after this many seconds, whichever comes first.
PROGRESS_STEP = 0.02
PROGRESS_SECONDS = 1.0

# An item's name ends at its first extension (a dot and 1 to 10 letters or
# digits) followed by the separator: a name may itself hold ": " or " -> ".
_ITEM = r"(?P<item>.+?\.[A-Za-z0-9]{1,10})"
_COUNT = r"(?P<index>\d+)/(?P<total>\d+)"

PATTERN_SETS = {
    # One line per event of a batch of videos; the success line's
    # " (K scenes)" is optional (Inventory's results are no scenes).
    "video-batch": {
        "total": r"^TOTAL_VIDEOS_TO_PROCESS: (?P<total>\d+)$",
        "item": rf"^PROCESSING_VIDEO: {_COUNT}: (?P<item>.+)$",
        "progress": r"^FRAMES: (?P<index>\d+)/(?P<total_items>\d+): (?P<done>\d+)/(?P<total>\d+)$",
        "success": rf"^SUCCESS: {_COUNT}: {_ITEM} -> (?P<result>.+?)(?: \((?P<scenes>\d+) scenes?\))?$",
        "failure": rf"^FAILED: {_COUNT}: {_ITEM}: (?P<cause>.+)$",
        "skipped": rf"^SKIPPED: {_COUNT}: {_ITEM}: (?P<reason>.+)$",
        "summary": r"^SUMMARY: (?P<succeeded>\d+)/(?P<total>\d+) succeeded, (?P<failed>\d+) failed, "
                   r"(?P<skipped>\d+) skipped$",
    },
}


def resolve_patterns(value):
    """A step's ``progress_patterns`` as an object of key -> regex.

    The rule every reader follows (the dashboard's registry, the steps' tests):
    a string names a standard set of PATTERN_SETS; an object is the step's own
    regexes, returned as they are (checking them is the reader's job). Raises
    ValueError, in one line, for an unknown name or any other kind of value."""
    if isinstance(value, str):
        try:
            return dict(PATTERN_SETS[value])
        except KeyError:
            raise ValueError(f"progress_patterns: unknown standard set {value!r} "
                             f"(known: {', '.join(sorted(PATTERN_SETS))})") from None
    if isinstance(value, dict):
        return value
    raise ValueError(f"progress_patterns: must name a standard set ({', '.join(sorted(PATTERN_SETS))}) "
                     f"or be an object of key -> regex, not {type(value).__name__}")


def one_line(text) -> str:
    """A name with a newline would break the one-event-per-line rule."""
    return str(text).replace("\r", " ").replace("\n", " ")


class ProgressEmitter:
    """Prints the protocol's lines to ``stream`` (flushed at once) and copies
    them to ``log_file`` if given. Thread-safe: one line is never cut by another."""

    def __init__(self, stream: Optional[TextIO] = None, log_file: Optional[TextIO] = None):
        self.stream = sys.stdout if stream is None else stream
        self.log_file = log_file
        self._lock = threading.Lock()
        self._last_frames = {}  # index -> (time, fraction) of its last FRAMES line

    def line(self, text: str) -> None:
        text = one_line(text)
        with self._lock:
            try:
                self.stream.write(text + "\n")
                self.stream.flush()
            except (BrokenPipeError, ValueError):
                pass  # the reader went away; the log file still gets the line
            if self.log_file is not None:
                self.log_file.write(text + "\n")

    def close(self) -> None:
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None

    # -- the contract's lines -----------------------------------------------------
    def config(self, json_text: str) -> None:
        self.line(f"CONFIG_EFFECTIVE: {json_text}")

    def device(self, device: str, why: str) -> None:
        self.line(f"DEVICE: {device} ({why})")

    def info(self, text: str) -> None:
        self.line(f"INFO: {text}")

    def warning(self, text: str) -> None:
        self.line(f"WARNING: {text}")

    def error(self, text: str) -> None:
        self.line(f"ERROR: {text}")

    def total(self, n: int) -> None:
        self.line(f"TOTAL_VIDEOS_TO_PROCESS: {n}")

    def processing(self, i: int, n: int, name: str) -> None:
        self.line(f"PROCESSING_VIDEO: {i}/{n}: {name}")

    def frames(self, i: int, n: int, done: int, total: int, final: bool = False) -> None:
        """Progress within item ``i``, throttled unless ``final``."""
        total = max(total, done, 1)
        now = time.monotonic()
        fraction = done / total
        last = self._last_frames.get(i)
        if not final and last is not None:
            last_time, last_fraction = last
            if fraction - last_fraction < PROGRESS_STEP and now - last_time < PROGRESS_SECONDS:
                return
            if fraction == last_fraction:
                return
        self._last_frames[i] = (now, fraction)
        self.line(f"FRAMES: {i}/{n}: {done}/{total}")

    def success(self, i: int, n: int, name: str, result: str, scenes: Optional[int] = None) -> None:
        count = "" if scenes is None else f" ({scenes} scene{'s' if scenes != 1 else ''})"
        self.line(f"SUCCESS: {i}/{n}: {name} -> {result}{count}")

    def failed(self, i: int, n: int, name: str, cause: str) -> None:
        self.line(f"FAILED: {i}/{n}: {name}: {cause}")

    def skipped(self, i: int, n: int, name: str, why: str) -> None:
        self.line(f"SKIPPED: {i}/{n}: {name}: {why}")

    def summary(self, succeeded: int, total: int, failed: int, skipped: int) -> None:
        self.line(f"SUMMARY: {succeeded}/{total} succeeded, {failed} failed, {skipped} skipped")
