"""Real frames of a video as JPEG thumbnails, made by ffmpeg on demand and
cached on disk.

The cache is the dashboard's own folder (``data/thumbnails/`` by default,
``THUMBNAIL_CACHE``), never the projects folder, which the README promises to
leave alone: one sub-folder per video version (its real path, size and
mtime hashed), so a changed video never shows old frames. Files are written
to a temporary name and renamed.

Work runs on a small pool of threads (``workers``, 2 by default: ffmpeg is
the CPU-heavy part); the same frame asked twice is made once, and a queue
longer than ``max_pending`` is refused (the page asks again) instead of
growing without bound.

Frame ``n`` (1-based, in decoded order as STEP3 counts) is found by seeking
to half a frame before its time: ffmpeg's accurate seek then outputs exactly
that frame for a constant rate. ``extract_many`` decodes once with a
``select`` on the decoded frame index instead (exact whatever the rate; used
for reports and contact sheets, where many frames are wanted at once).
"""
import hashlib
import os
import subprocess
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Dict, Iterable, List

from ..safe_open import open_exactly

MIN_WIDTH, MAX_WIDTH = 16, 1280
QUALITY = "4"  # mjpeg -q:v: small files, no visible blocks at thumbnail sizes


class Busy(RuntimeError):
    """Too many thumbnails are waiting: ask again later."""


def clamp_width(width: int) -> int:
    return max(MIN_WIDTH, min(MAX_WIDTH, int(width) // 2 * 2))


def video_key(video: Path) -> str:
    st = os.stat(video)
    return hashlib.sha256(f"{os.path.realpath(video)}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:32]


def _scale(width: int) -> str:
    return f"scale={width}:-2:flags=bicubic"


INPUT = "<the video>"  # stands for ffmpeg's input in a command given to _run


def _run(cmd: List[str], timeout: float, video: Path) -> None:
    """ffmpeg with ``video`` as its input: the file opened and checked here
    (safe_open.open_exactly) and handed over as /proc/self/fd/N, so a folder
    swapped for a link after the path was checked cannot make ffmpeg read
    another file."""
    with open_exactly(video) as source:
        fd = source.fileno()
        cmd = [f"/proc/self/fd/{fd}" if arg == INPUT else arg for arg in cmd]
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              timeout=timeout, pass_fds=(fd,))
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
        raise RuntimeError(f"ffmpeg could not extract the frame: {tail[0]}")


def extract_one(video: Path, frame: int, width: int, fps: float, out: Path, ffmpeg: str = "ffmpeg") -> Path:
    """Frame ``frame`` (1-based) of ``video`` as a JPEG at ``out``, written atomically."""
    at = max(0.0, (frame - 1.5) / fps)
    tmp = out.with_name(f".tmp-{os.getpid()}-{threading.get_ident()}-{out.name}")
    try:
        _run([ffmpeg, "-nostdin", "-v", "error", "-ss", f"{at:.6f}", "-i", INPUT, "-map", "0:v:0",
              "-frames:v", "1", "-vf", _scale(width), "-q:v", QUALITY, "-f", "image2", "-y", str(tmp)], 120, video)
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise RuntimeError(f"ffmpeg gave no picture for frame {frame} (beyond the end?)")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _any_of(terms: List[str]) -> str:
    """``a+b+c...`` as a balanced tree: ffmpeg's expression parser refuses a
    flat chain of more than about 100 terms (its nesting limit), not a tree."""
    if len(terms) == 1:
        return terms[0]
    middle = len(terms) // 2
    return f"({_any_of(terms[:middle])}+{_any_of(terms[middle:])})"


def extract_many(video: Path, frames: Iterable[int], width: int, outs: Dict[int, Path], ffmpeg: str = "ffmpeg",
                 timeout: float = 3600) -> None:
    """Several frames (1-based) in one decoding pass, each to ``outs[frame]``."""
    wanted = sorted(set(frames))
    if not wanted:
        return
    with tempfile.TemporaryDirectory(prefix=".thumbs-", dir=next(iter(outs.values())).parent) as tmp:
        # A file of the filter graph: thousands of frames make an expression
        # longer than a command line may be.
        script = Path(tmp) / "graph.txt"
        expr = _any_of([f"eq(n\\,{n - 1})" for n in wanted])
        script.write_text(f"select='{expr}',{_scale(width)}")
        _run([ffmpeg, "-nostdin", "-v", "error", "-i", INPUT, "-map", "0:v:0",
              "-filter_script:v", str(script), "-fps_mode", "passthrough", "-q:v", QUALITY,
              "-f", "image2", str(Path(tmp) / "%07d.jpg")], timeout, video)
        made = sorted(p for p in Path(tmp).iterdir() if p.suffix == ".jpg")
        if len(made) != len(wanted):
            raise RuntimeError(f"ffmpeg gave {len(made)} pictures for {len(wanted)} frames")
        for frame, path in zip(wanted, made):
            os.replace(path, outs[frame])


class ThumbnailCache:
    """The frames on disk and the pool that makes the missing ones."""

    def __init__(self, folder: Path, workers: int = 2, max_pending: int = 4096, ffmpeg: str = "ffmpeg"):
        self.folder = Path(folder)
        self.ffmpeg = ffmpeg
        self.max_pending = max_pending
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="thumbnail")
        self._pending: Dict[Path, Future] = {}
        self._lock = threading.Lock()

    def path(self, video: Path, frame: int, width: int) -> Path:
        return self.folder / video_key(video) / f"{frame:07d}-w{width}.jpg"

    def get(self, video: Path, frame: int, width: int, fps: float) -> Future:
        """A future of the JPEG's path: done at once when it is cached."""
        out = self.path(video, frame, width)
        if out.exists():
            done: Future = Future()
            done.set_result(out)
            return done
        with self._lock:
            if out in self._pending:
                return self._pending[out]
            if len(self._pending) >= self.max_pending:
                raise Busy(f"{len(self._pending)} thumbnails are being made; ask again in a moment")
            out.parent.mkdir(parents=True, exist_ok=True)
            future = self._pool.submit(extract_one, video, frame, width, fps, out, self.ffmpeg)
            self._pending[out] = future
        future.add_done_callback(lambda _f, key=out: self._forget(key))
        return future

    def _forget(self, key: Path) -> None:
        with self._lock:
            self._pending.pop(key, None)

    def run(self, function, *args) -> Future:
        """Other image work (a contact sheet) on the same bounded pool."""
        return self._pool.submit(function, *args)

    def many(self, video: Path, frames: Iterable[int], width: int) -> Dict[int, Path]:
        """Every frame asked for, the missing ones made in one pass (blocking:
        for exports, not for the pages)."""
        outs = {f: self.path(video, f, width) for f in set(frames)}
        missing = [f for f, p in outs.items() if not p.exists()]
        if missing:
            outs[missing[0]].parent.mkdir(parents=True, exist_ok=True)
            extract_many(video, missing, width, {f: outs[f] for f in missing}, self.ffmpeg)
        return outs

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
