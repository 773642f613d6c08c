"""How every step asks ffprobe about a file, and which stream is its video.

One rule for all: a file's video is its first video stream that is not an
attached picture (the cover art of an MP4 or a Matroska file is a one-frame
"video" stream that no step should analyse). A file whose only video stream
is cover art has no video.
"""
import os
from pathlib import Path
from typing import List, Optional


def ffprobe_command(path: Path, ffprobe: str = "ffprobe") -> List[str]:
    # An absolute path: a relative name with a colon ("a:b.mp4") would be read
    # as a protocol, one starting with "-" as an option.
    return [ffprobe, "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
            os.path.abspath(path)]


def video_streams(probed: dict) -> List[dict]:
    """The streams of ffprobe's JSON answer that are real video (no cover art)."""
    return [s for s in probed.get("streams") or []
            if isinstance(s, dict) and s.get("codec_type") == "video"
            and not (s.get("disposition") or {}).get("attached_pic")]


def select_video_stream(probed: dict) -> Optional[dict]:
    """The stream every step analyses, or None when the file has no video."""
    streams = video_streams(probed)
    return streams[0] if streams else None


def last_error_line(stderr: str, path: Path) -> str:
    """ffprobe's (or ffmpeg's) last message, without the file name it starts with."""
    lines = [ln.strip() for ln in (stderr or "").splitlines() if ln.strip()]
    if not lines:
        return ""
    last = lines[-1]
    for prefix in (f"{os.path.abspath(path)}: ", f"{path}: "):
        if last.startswith(prefix):
            return last[len(prefix):]
    return last
