"""Which scenes a video is cut into: its review (``<stem>.review.json``, saved
on the dashboard's video page; docs/result-format.md) when there is one made
on this version of the video, else STEP3's scenes. Either must come with a
complete STEP3 result that still describes the video."""
import json
from pathlib import Path
from typing import List, Tuple

from stepkit.result_check import ResultError, load_result
from stepkit.scene_results import result_paths, sha256_file, video_identity
from stepkit.videos import folder_videos

REVIEW_FORMAT, REVIEW_SUFFIX = "step3-review/1", ".review.json"


class NoScenes(ValueError):
    """The video cannot be split; the message says why, for the FAILED line."""


def scenes_of(video: Path) -> Tuple[List[Tuple[int, int]], str, dict]:
    """(1-based inclusive scenes, "review" or "step3", the STEP3 document)."""
    paths = result_paths(video, folder_videos(video.parent))
    if not paths.json.exists():
        raise NoScenes("not analysed yet: run STEP3 first")
    try:
        doc = load_result(paths.json)
    except ResultError as exc:
        raise NoScenes(f"its STEP3 result cannot be used: {exc.problems[0] if exc.problems else exc}") from None
    if doc["video"]["identity"] != video_identity(video):
        raise NoScenes("its STEP3 result is stale (the video changed since): run STEP3 again")
    try:
        if sha256_file(paths.csv) != doc["csv"]["sha256"]:
            raise NoScenes(f"{paths.csv.name} was edited after STEP3 wrote it: run STEP3 again")
    except OSError:
        raise NoScenes(f"{paths.csv.name} is missing: run STEP3 again") from None
    review = paths.json.with_name(paths.json.name[: -len(".scenes.json")] + REVIEW_SUFFIX)
    try:
        data = json.loads(review.read_text(encoding="utf-8"))
    except FileNotFoundError:
        data = None
    except (OSError, ValueError) as exc:
        raise NoScenes(f"its review {review.name} cannot be read: {exc}") from None
    if data is not None:
        if not isinstance(data, dict) or data.get("format") != REVIEW_FORMAT:
            raise NoScenes(f"{review.name} is not a review ({REVIEW_FORMAT})")
        if data.get("video", {}).get("identity") == doc["video"]["identity"]:
            return check(data.get("scenes"), doc["video"]["frame_count"], review.name), "review", doc
        # A review of another version of the video: its frames mean nothing here.
        raise NoScenes(f"its review {review.name} was made on an earlier version of the video: "
                       "check it on the video's page (or drop it)")
    return [(s["frame_in"], s["frame_out"]) for s in doc["scenes"]], "step3", doc


def check(scenes, frame_count: int, where: str) -> List[Tuple[int, int]]:
    out, previous = [], 0
    if not isinstance(scenes, list) or not scenes:
        raise NoScenes(f"{where}: scenes: must be a non-empty list")
    for i, pair in enumerate(scenes):
        ok = isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                for v in pair)
        if not ok or not previous < pair[0] <= pair[1] <= frame_count:
            raise NoScenes(f"{where}: scenes[{i}]: not a scene after the previous one inside frames 1-{frame_count}")
        out.append(tuple(pair))
        previous = pair[1]
    return out
