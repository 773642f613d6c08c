"""Which videos of the projects folder have a STEP3 result, and in what state.

States, in words for the pages:
- ``done``: the result follows the format and still describes the video (same
  size and modification time; the CSV is the one its JSON wrote);
- ``stale``: a result of ours for another version of the video (it changed);
- ``failed``: no usable result and STEP3's last run on this folder failed it
  (the cause is that run's);
- ``invalid``: a ``.scenes.json`` that cannot be used (the cause named);
- ``missing``: not analysed yet.

Results are parsed once per (file, size, mtime): the JSON of an hour of video
holds 180k probabilities, and the list asks for every video.
"""
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from stepkit.result_check import ResultError, load_result
from stepkit.scene_results import result_paths, sha256_file, video_identity
from stepkit.videos import folder_videos, is_video_name

from ..safe_open import resolve_inside


@dataclass
class VideoResult:
    path: str                 # relative to the projects folder, '/' separators
    file: Path                # the real path of the video
    status: str               # done | stale | failed | invalid | missing
    cause: Optional[str] = None
    document: Optional[dict] = field(default=None, repr=False)
    csv_path: Optional[Path] = None
    json_path: Optional[Path] = None

    @property
    def usable(self) -> bool:
        return self.status == "done"

    @property
    def review_path(self) -> Path:
        from .review import review_path_for
        return review_path_for(self.json_path)


class ResultCache:
    """Parsed results, keyed by the JSON's path, size and mtime (bounded LRU)."""

    def __init__(self, capacity: int = 32):
        self.capacity = capacity
        self._items: "OrderedDict[tuple, object]" = OrderedDict()
        self._lock = threading.Lock()

    def load(self, json_path: Path):
        """The document, or a ResultError (returned, not raised)."""
        st = os.stat(json_path)
        key = (str(json_path), st.st_size, st.st_mtime_ns)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        try:
            value = load_result(json_path)
        except ResultError as exc:
            value = exc
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return value


def find_video(root: Path, relative: str) -> Path:
    """The real path of a video named by a request; OutsideRoot (a 403) for
    anything outside ``root`` or not a plain relative path, FileNotFoundError
    when there is no such video."""
    real = resolve_inside(root, relative)
    if not is_video_name(real.name) or not is_video_name(relative.rsplit("/", 1)[-1]):
        raise FileNotFoundError(f"{relative} is not a video")
    if not real.is_file():
        raise FileNotFoundError(relative)
    return real


def examine(root: Path, relative: str, cache: ResultCache, failures: dict) -> VideoResult:
    """The state of the video ``relative`` (already found inside ``root``)."""
    real = find_video(root, relative)
    paths = result_paths(real, folder_videos(real.parent))
    result = VideoResult(relative, real, "missing", csv_path=paths.csv, json_path=paths.json)
    if not paths.json.exists():
        if relative in failures:
            result.status, result.cause = "failed", failures[relative]
        return result
    loaded = cache.load(paths.json)
    if isinstance(loaded, ResultError):
        result.status = "failed" if relative in failures else "invalid"
        result.cause = failures.get(relative) or f"the result cannot be used: {loaded.problems[0] if loaded.problems else loaded}"
        return result
    result.document = loaded
    if loaded["video"]["identity"] != video_identity(real):
        result.status = "stale"
        result.cause = "the video changed after it was analysed: run STEP3 again"
        return result
    try:
        same_csv = sha256_file(paths.csv) == loaded["csv"]["sha256"]
    except OSError:
        same_csv = False
    if not same_csv:
        result.status = "invalid"
        result.cause = f"{paths.csv.name} is missing or was edited after STEP3 wrote it: run STEP3 again"
        return result
    result.status = "done"
    return result


def summary(result: VideoResult, review: Optional[dict]) -> dict:
    """One video as GET /api/videos lists it."""
    doc = result.document if result.status in ("done", "stale") else None
    video = doc["video"] if doc else {}
    return {
        "path": result.path,
        "status": result.status,
        "cause": result.cause,
        "scenes": len(review["scenes"]) if review and result.usable else (doc["scene_count"] if doc else None),
        "scenes_step3": doc["scene_count"] if doc else None,
        "duration_s": video.get("decoded_span_s"),
        "fps": video.get("fps"),
        "frames": video.get("frame_count"),
        "width": video.get("width"),
        "height": video.get("height"),
        "threshold": doc["threshold"] if doc else None,
        "reviewed": bool(review),
        "review_outdated": bool(review and review.get("outdated")),
        "csv": _rel(result, result.csv_path) if doc else None,
        "json": _rel(result, result.json_path) if doc else None,
    }


def _rel(result: VideoResult, path: Path) -> str:
    folder = result.path.rsplit("/", 1)[0] + "/" if "/" in result.path else ""
    return folder + path.name

