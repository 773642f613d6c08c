"""A video's reviewed scene list: ``<stem>.review.json`` next to its results
(docs/result-format.md, "Reviews"). The dashboard writes it (atomically), and
STEP3 never touches it: a re-run rewrites ``.csv`` and ``.scenes.json`` only,
and its clean-up of stale results removes those two names only. A review made
before the video changed or was analysed again is kept and marked outdated.
"""
import json
import time
from pathlib import Path
from typing import List, Optional, Tuple

from stepkit.atomic import write_atomic
from stepkit.scene_results import JSON_SUFFIX

from . import scene_rule

FORMAT = "step3-review/1"
SUFFIX = ".review.json"
TEMP_PREFIX = ".dashboard-tmp-"
MAX_BODY = 8 * 1024 * 1024


class ReviewError(ValueError):
    """A review that is not a valid scene list; the message names the cause."""


def review_path_for(json_path: Path) -> Path:
    name = json_path.name
    base = name[: -len(JSON_SUFFIX)] if name.endswith(JSON_SUFFIX) else name
    return json_path.with_name(base + SUFFIX)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_scenes(scenes, frame_count: int) -> List[Tuple[int, int]]:
    """1-based inclusive pairs, in order, not overlapping, inside the video."""
    if not isinstance(scenes, list) or not scenes:
        raise ReviewError("scenes: must be a non-empty list of [frame_in, frame_out] pairs")
    out, previous = [], 0
    for i, item in enumerate(scenes):
        if not (isinstance(item, list) and len(item) == 2 and all(_is_int(v) for v in item)):
            raise ReviewError(f"scenes[{i}]: must be a pair of integers [frame_in, frame_out], got {json.dumps(item)[:40]}")
        first, last = item
        if first < 1 or last > frame_count:
            raise ReviewError(f"scenes[{i}]: {first}-{last} is outside the video's frames 1-{frame_count}")
        if first > last:
            raise ReviewError(f"scenes[{i}]: frame_in {first} is after frame_out {last}")
        if first <= previous:
            raise ReviewError(f"scenes[{i}]: frame_in {first} is not after the previous scene's frame_out {previous}")
        out.append((first, last))
        previous = last
    return out


def scenes_from_request(body, document: dict) -> Tuple[List[Tuple[int, int]], Optional[float]]:
    """The scenes a PUT asks for: ``{"scenes": [[in, out], ...]}`` (edited), or
    ``{"threshold": t}`` (the official rule on the stored probabilities), or
    both (the scenes win; the threshold is kept as where they started from)."""
    if not isinstance(body, dict):
        raise ReviewError("the review must be a JSON object with 'scenes' or 'threshold'")
    unknown = sorted(set(body) - {"scenes", "threshold"})
    if unknown:
        raise ReviewError(f"{unknown[0]}: not a field of a review (fields: scenes, threshold)")
    threshold = body.get("threshold")
    if threshold is not None and not (isinstance(threshold, (int, float)) and not isinstance(threshold, bool)
                                      and 0 < threshold < 1):
        raise ReviewError(f"threshold: must be a number between 0 and 1 (exclusive), got {json.dumps(threshold)[:40]}")
    frames = document["video"]["frame_count"]
    if "scenes" in body:
        return check_scenes(body["scenes"], frames), threshold
    if threshold is None:
        raise ReviewError("the review needs 'scenes' or 'threshold'")
    return scene_rule.scenes_at(document["predictions"]["single_frame"], threshold), float(threshold)


def make_review(document: dict, scenes, threshold: Optional[float]) -> dict:
    return {
        "format": FORMAT,
        "video": {"file": document["video"]["file"], "identity": document["video"]["identity"],
                  "frame_count": document["video"]["frame_count"]},
        "based_on": {"started_at": document["timings"]["started_at"],
                     "weights_sha256": document["model"]["weights_sha256"],
                     "threshold": document["threshold"], "scene_count": document["scene_count"]},
        "threshold": threshold,
        "scenes": [list(s) for s in scenes],
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def save(path: Path, review: dict) -> None:
    write_atomic(path, (json.dumps(review, separators=(",", ":")) + "\n").encode("utf-8"), TEMP_PREFIX)


def load(path: Path, document: Optional[dict]) -> Optional[dict]:
    """The review with ``outdated`` (a sentence, or None) added; None when there
    is none. One that cannot be read is reported as such, not dropped."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"broken": f"{path.name} cannot be read: {exc}", "scenes": [], "outdated": None}
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return {"broken": f"{path.name} is not a review ({FORMAT})", "scenes": [], "outdated": None}
    data["outdated"] = outdated(data, document) if document else None
    return data


def outdated(review: dict, document: dict) -> Optional[str]:
    """Why the review was made on other predictions than the current result's, or None."""
    if review.get("video", {}).get("identity") != document["video"]["identity"]:
        return "made on an earlier version of the video (it changed since): check it again"
    based = review.get("based_on", {})
    if based.get("weights_sha256") != document["model"]["weights_sha256"]:
        return "made on the predictions of other model weights: check it again"
    if based.get("started_at") != document["timings"]["started_at"]:
        return "made on an earlier STEP3 analysis of this video (older predictions)"
    return None


def remove(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False
