"""What an export is made of: a video's scenes (its review when there is one,
else STEP3's), its rate and its name, and a sentence saying which list it is."""
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from .catalog import VideoResult
from .timecode import Rate, rate_of


class ExportRefused(ValueError):
    """No export can be made honestly; the message says why, for the user."""


@dataclass
class Timeline:
    name: str                       # the video's file name (shown as text, escaped by each format)
    path: str                       # relative to the projects folder
    file: Path                      # its real path (the media reference of editor formats)
    rate: Rate
    frame_count: int
    width: int
    height: int
    scenes: List[Tuple[int, int]]   # 1-based inclusive frames
    source: str                     # "review" or "step3"
    note: str                       # which list this is, in words
    document: dict

    @property
    def file_url(self) -> str:
        return self.file.resolve().as_uri()


def timeline_of(result: VideoResult, review: Optional[dict], use: str = "auto") -> Timeline:
    """The export's content; ExportRefused when the result is not usable or
    the review cannot be (broken, or made on another version of the video)."""
    if not result.usable:
        words = {"missing": "it has not been analysed yet", "stale": "its result is stale",
                 "failed": "STEP3 failed on it", "invalid": "its result cannot be used"}[result.status]
        raise ExportRefused(f"no export for {result.path}: {words}" + (f" ({result.cause})" if result.cause else ""))
    doc = result.document
    video = doc["video"]
    scenes = [(s["frame_in"], s["frame_out"]) for s in doc["scenes"]]
    source, note = "step3", f"STEP3's scenes (threshold {doc['threshold']:g}, analysed {doc['timings']['started_at']})"
    if review and use != "step3":
        if review.get("broken"):
            raise ExportRefused(f"no export for {result.path}: its review {review['broken']}")
        if review.get("outdated", "") and "version of the video" in review["outdated"]:
            raise ExportRefused(f"no export for {result.path}: its review was {review['outdated']} "
                                f"(open the video's page, or export STEP3's scenes with use=step3)")
        scenes = [tuple(s) for s in review["scenes"]]
        source = "review"
        note = f"the reviewed scene list saved {review['saved_at']}"
        if review.get("outdated"):
            note += f" ({review['outdated']})"
    elif use == "review":
        raise ExportRefused(f"no export for {result.path}: it has no review")
    return Timeline(name=video["file"], path=result.path, file=result.file,
                    rate=rate_of(video["frame_rate"], video["fps"]), frame_count=video["frame_count"],
                    width=video["width"], height=video["height"], scenes=scenes, source=source, note=note,
                    document=doc)
