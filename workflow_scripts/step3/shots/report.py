"""STEP3's side of the progress-line contract (docs/progress-protocol.md).

Every line goes to stdout, flushed, and to the run's log file.
"""
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Optional, TextIO

# Frame progress is reported when it moved by this share of the video, or
# after this many seconds, whichever comes first.
PROGRESS_STEP = 0.02
PROGRESS_SECONDS = 1.0


def _clean(text: str) -> str:
    # A name with a newline would break the one-event-per-line rule.
    return str(text).replace("\r", " ").replace("\n", " ")


class Reporter:
    def __init__(self, stream: TextIO = sys.stdout, log_file: Optional[TextIO] = None):
        self.stream = stream
        self.log_file = log_file
        self._lock = threading.Lock()
        self._last_frames = {}  # index -> (time, fraction)

    @classmethod
    def with_log(cls, log_dir: Path) -> "Reporter":
        log_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
        path = log_dir / f"transnet_{stamp}.log"
        n = 1
        while path.exists():  # two runs within one second keep separate logs
            n += 1
            path = log_dir / f"transnet_{stamp}_{n}.log"
        reporter = cls(log_file=open(path, "a", encoding="utf-8", buffering=1))
        reporter.log_path = path
        return reporter

    def line(self, text: str) -> None:
        text = _clean(text)
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

    # -- the contract's lines -------------------------------------------------
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

    def success(self, i: int, n: int, name: str, result: str, scenes: int) -> None:
        self.line(f"SUCCESS: {i}/{n}: {name} -> {result} ({scenes} scene{'s' if scenes != 1 else ''})")

    def failed(self, i: int, n: int, name: str, cause: str) -> None:
        self.line(f"FAILED: {i}/{n}: {name}: {cause}")

    def skipped(self, i: int, n: int, name: str, why: str) -> None:
        self.line(f"SKIPPED: {i}/{n}: {name}: {why}")

    def summary(self, succeeded: int, total: int, failed: int, skipped: int) -> None:
        self.line(f"SUMMARY: {succeeded}/{total} succeeded, {failed} failed, {skipped} skipped")
