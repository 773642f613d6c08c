"""What a video is, as ffprobe reads it: its stream, size, rate, length and
start, or the one-line reason it cannot be analysed.

The video stream is chosen by stepkit's rule (the first video stream that is
not cover art), the same for every step.
"""
import json
import math
import stat
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Optional

from stepkit.probe import ffprobe_command, last_error_line, select_video_stream

# Containers whose header declares the length (ffprobe's format_name tokens).
DECLARED_DURATION_FORMATS = {"mov", "mp4", "matroska", "webm", "avi", "asf", "flv", "mxf"}


class DecodeError(Exception):
    """A video cannot be (fully) decoded. The message is the cause, in one line."""


@dataclass
class VideoInfo:
    path: Path  # a str after a trip through a process boundary; see __post_init__
    stream_index: int
    codec: str
    width: int
    height: int
    fps: float
    fps_fraction: str
    duration: Optional[float]
    expected_frames: Optional[int]
    # The first timestamp of the file (ffmpeg's seeks are relative to it).
    start_time: float = 0.0
    # Whether the container declares its length (MP4, Matroska, AVI...), so that
    # stopping well short of it means damage. MPEG-TS, MPEG-PS and raw streams
    # only estimate it (from the last timestamp or the bit rate).
    declares_duration: bool = True
    # How its pictures are stored (ffprobe's names; "" when not said): what a
    # GPU decoder needs to convert them exactly as ffmpeg would.
    pix_fmt: str = ""
    color_space: str = ""
    color_range: str = ""

    def __post_init__(self):
        self.path = Path(self.path)


def one_line(text: str, limit: int = 300) -> str:
    """A message of ffmpeg's as one line of at most ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def tool_error(stderr: str, path: Path) -> str:
    """The last thing ffprobe or ffmpeg said, without the file name (the caller names it)."""
    return one_line(last_error_line(stderr, path) or "unknown error")


def _fraction(value: Optional[str]) -> Optional[Fraction]:
    try:
        f = Fraction(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return f if f > 0 else None


def _duration(value) -> Optional[float]:
    try:
        d = float(value)
    except (TypeError, ValueError):
        return None
    return d if d > 0 and math.isfinite(d) else None


def _tag_duration(tags: dict) -> Optional[float]:
    # Matroska keeps per-stream durations in a "DURATION" tag: "00:01:00.103000000".
    for key, value in (tags or {}).items():
        if key.upper() == "DURATION" and isinstance(value, str):
            parts = value.split(":")
            try:
                if len(parts) == 3:
                    return _duration(int(parts[0]) * 3600 + int(parts[1]) * 60 + float(parts[2]))
            except ValueError:
                return None
    return None


def check_readable(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DecodeError("file not found") from None
    except OSError as exc:
        raise DecodeError(f"cannot access file: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        mode = st.st_mode
        kind = ("a folder" if stat.S_ISDIR(mode) else "a named pipe" if stat.S_ISFIFO(mode) else
                "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket")
        raise DecodeError(f"not a regular file ({kind})")
    size = st.st_size
    if size == 0:
        raise DecodeError("empty file (0 bytes)")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except PermissionError:
        raise DecodeError("permission denied (file not readable)") from None
    except OSError as exc:
        raise DecodeError(f"cannot read file: {exc.strerror}") from None


def _ffprobe(path: Path, timeout: float) -> dict:
    try:
        proc = subprocess.run(ffprobe_command(path), capture_output=True, text=True, errors="replace",
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DecodeError(f"ffprobe did not answer within {timeout:.0f} s") from None
    except FileNotFoundError:
        raise DecodeError("ffprobe is not installed (run `make setup`)") from None
    if proc.returncode != 0:
        raise DecodeError(f"cannot read video: {tool_error(proc.stderr, path)}")
    try:
        data = json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        raise DecodeError("cannot read video: ffprobe gave no usable answer") from None
    if not isinstance(data, dict):
        raise DecodeError("cannot read video: ffprobe gave no usable answer")
    return data


def probe(path: Path, timeout: float = 60.0) -> VideoInfo:
    """Read the container with ffprobe; raise DecodeError if it holds no decodable video."""
    check_readable(path)
    data = _ffprobe(path, timeout)
    s = select_video_stream(data)
    if s is None:
        raise DecodeError("no video stream in the file")
    width, height = int(s.get("width") or 0), int(s.get("height") or 0)
    if width <= 0 or height <= 0:
        raise DecodeError(f"video stream has no picture size (codec {s.get('codec_name', '?')})")

    rate = _fraction(s.get("avg_frame_rate")) or _fraction(s.get("r_frame_rate"))
    fmt = data.get("format") or {}
    start = _start_time(fmt.get("start_time"), s.get("start_time"))
    duration = _duration(s.get("duration"))  # a stream's own duration is a length
    if duration is None:
        # A Matroska DURATION tag, or the container's duration, can be the end
        # timestamp instead (ffmpeg writes them so for a file that starts late):
        # take the shorter reading, so that a good file never looks truncated.
        duration = _tag_duration(s.get("tags")) or _duration(fmt.get("duration"))
        if duration and 0 < start < duration:
            duration -= start
    try:
        expected = int(s["nb_frames"])
    except (KeyError, TypeError, ValueError):
        expected = None
    if (not expected or expected <= 0) and duration and rate:
        expected = int(round(duration * float(rate)))
    formats = set(str(fmt.get("format_name", "")).split(","))
    return VideoInfo(
        path=path,
        stream_index=int(s.get("index", 0)),
        codec=str(s.get("codec_name", "?")),
        width=width,
        height=height,
        fps=float(rate) if rate else 0.0,
        fps_fraction=f"{rate.numerator}/{rate.denominator}" if rate else "0/1",
        duration=duration,
        expected_frames=expected if expected and expected > 0 else None,
        start_time=start,
        declares_duration=bool(formats & DECLARED_DURATION_FORMATS),
        pix_fmt=str(s.get("pix_fmt") or ""),
        color_space=str(s.get("color_space") or ""),
        color_range=str(s.get("color_range") or ""),
    )


def _start_time(*values) -> float:
    for value in values:
        try:
            t = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(t):
            return t
    return 0.0

