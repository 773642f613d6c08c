"""The results of one projects folder as the web layer uses them: a video's
state and result, its review, the thumbnails, the predictions for the page."""
import math
import os
from pathlib import Path
from typing import Optional
from urllib.parse import unquote

from ..safe_open import OutsideRoot
from . import review as reviews
from .catalog import ResultCache, VideoResult, examine, summary
from .stats import shot_stats
from .thumbnails import ThumbnailCache
from .timecode import rate_of

PLOT_POINTS = 6000      # the plot gets at most this many points per head (max per bin: peaks survive)
SPARSE_MIN = 0.02       # the page's slider goes down to this; frames above it are sent one by one
RANGE_LIMIT = 20000     # full-resolution frames one request may ask for


def check_request_path(relative: str) -> str:
    """Refuse what safe_open would take literally but a user meant as a way
    out: traversal percent-encoded once or more (``%2e%2e``, ``%252e%252e``)."""
    text = relative
    for _ in range(4):
        decoded = unquote(text)
        if "\\" in decoded or "\x00" in decoded or decoded.startswith("/") or ".." in decoded.split("/"):
            raise OutsideRoot("encoded traversal, backslashes and absolute paths are refused")
        if decoded == text:
            break
        text = decoded
    return relative


class ResultsLibrary:
    def __init__(self, projects_dir: Path, thumbnail_dir: Path, failures=lambda: {}):
        self.projects_dir = Path(projects_dir)
        self.results = ResultCache()
        self.thumbnails = ThumbnailCache(thumbnail_dir)
        self.failures = failures  # () -> {relative path: cause} from STEP3's last run here

    def examine(self, relative: str) -> VideoResult:
        return examine(self.projects_dir, check_request_path(relative), self.results, self.failures())

    def review_of(self, result: VideoResult) -> Optional[dict]:
        if result.json_path is None:
            return None
        return reviews.load(result.review_path, result.document if result.status in ("done", "stale") else None)

    def listing(self, paths) -> list:
        failures = self.failures()
        out = []
        for relative in paths:
            try:
                result = examine(self.projects_dir, relative, self.results, failures)
            except (OSError, ValueError) as exc:
                out.append({"path": relative, "status": "invalid", "cause": f"cannot be read: {exc}",
                            "scenes": None, "reviewed": False})
                continue
            out.append(summary(result, self.review_of(result)))
        return out

    def detail(self, result: VideoResult, first: Optional[int] = None, last: Optional[int] = None) -> dict:
        review = self.review_of(result)
        data = summary(result, review)
        doc = result.document
        if doc is None:
            return data
        video = {k: v for k, v in doc["video"].items() if k != "identity"}
        rate = rate_of(video["frame_rate"], video["fps"])
        current = review["scenes"] if review and result.usable and not review.get("broken") else \
            [[s["frame_in"], s["frame_out"]] for s in doc["scenes"]]
        data.update(
            video=video,
            rate={"fps": float(rate.exact), "timebase": rate.timebase, "ntsc": rate.ntsc,
                  "drop_frame": rate.drop_frame},
            model=doc["model"], analysed_at=doc["timings"]["started_at"],
            step3_scenes=doc["scenes"],
            review=review,
            stats=shot_stats(current, video["fps"]),
            predictions=predictions_for_page(doc["predictions"]),
        )
        if first is not None and last is not None:
            data["predictions_range"] = prediction_range(doc["predictions"], first, last)
        return data

    def close(self) -> None:
        self.thumbnails.close()


def downsample(values, factor: int) -> list:
    if factor <= 1:
        return values
    return [max(values[i:i + factor]) for i in range(0, len(values), factor)]


def predictions_for_page(predictions: dict) -> dict:
    single, every = predictions["single_frame"], predictions["all_frames"]
    factor = max(1, math.ceil(len(single) / PLOT_POINTS))
    return {
        "frames": len(single),
        "factor": factor,  # each plotted value is the largest of `factor` frames
        "single_frame": downsample(single, factor),
        "all_frames": downsample(every, factor),
        "sparse_min": SPARSE_MIN,
        # [0-based frame, p] for every frame above SPARSE_MIN: enough for the
        # page to apply the scene rule exactly at any threshold >= SPARSE_MIN.
        "single_sparse": [[i, p] for i, p in enumerate(single) if p > SPARSE_MIN],
    }


def prediction_range(predictions: dict, first: int, last: int) -> dict:
    """Full-resolution values for 1-based frames first..last (at most RANGE_LIMIT)."""
    n = len(predictions["single_frame"])
    first = max(1, min(first, n))
    last = max(first, min(last, n, first + RANGE_LIMIT - 1))
    return {"from": first, "to": last,
            "single_frame": predictions["single_frame"][first - 1:last],
            "all_frames": predictions["all_frames"][first - 1:last]}


def real_relative(root: Path, path: Path) -> str:
    """``path`` (already inside root's real path) relative to it, for safe_open."""
    return Path(os.path.realpath(path)).relative_to(os.path.realpath(root)).as_posix()
