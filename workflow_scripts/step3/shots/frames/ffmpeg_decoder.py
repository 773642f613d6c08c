"""Frames for TransNetV2, exactly as the official inference makes them.

The official code pipes ``ffmpeg -i VIDEO -f rawvideo -pix_fmt rgb24 -s 48x27 -``:
RGB, 48x27, resized by ffmpeg's default (bicubic) scaler, which other resizers
do not reproduce. So the decoder *is* ffmpeg, one process per video, streamed
through a pipe: memory stays flat whatever the video's length, and the decoding
runs in its own CPU process beside the one that owns the model.

Two deliberate differences from that command, neither of which changes a pixel:
- ``-fps_mode passthrough``: the rawvideo muxer would otherwise duplicate or drop
  frames of variable-frame-rate input to fit a constant rate; frames are counted
  as decoded instead.
- a ``showinfo`` filter after the scaler reports each frame's timestamp on
  stderr, so timecodes follow the real timestamps.
"""
import fcntl
import io
import json
import math
import os
import re
import stat
import subprocess
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import List, Optional

import numpy as np

HEIGHT, WIDTH, CHANNELS = 27, 48, 3
FRAME_BYTES = HEIGHT * WIDTH * CHANNELS
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PIPE_SIZE = 1 << 20
# Decoded span below this share of the declared duration: the file is truncated.
MIN_COVERAGE = 0.9

_PTS_RE = re.compile(r"\bn:\s*\d+\s+pts:\s*\S+\s+pts_time:(\S+)")
# Containers whose header declares the length (ffprobe's format_name tokens).
DECLARED_DURATION_FORMATS = {"mov", "mp4", "matroska", "webm", "avi", "asf", "flv", "mxf"}
# Messages ffmpeg logs at error level that are no decoding error: the rawvideo
# muxer complains about equal timestamps of variable-frame-rate input, which
# it fixes itself (every frame is still written, in order).
HARMLESS_ERRORS = ("non monotonically increasing dts",)


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

    def __post_init__(self):
        self.path = Path(self.path)


@dataclass
class DecodeReport:
    frame_count: int
    timestamps: List[float]
    error_count: int
    error_messages: List[str] = field(default_factory=list)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _last_error(stderr: str, path: Path) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if not lines:
        return "unknown error"
    last = lines[-1]
    # ffmpeg ends with "<path>: <cause>"; the caller names the file already.
    prefix = f"{path}: "
    return _one_line(last[len(prefix):] if last.startswith(prefix) else last)


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


def probe(path: Path, timeout: float = 60.0) -> VideoInfo:
    """Read the container with ffprobe; raise DecodeError if it holds no decodable video."""
    check_readable(path)
    cmd = ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
           os.path.abspath(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DecodeError(f"ffprobe did not answer within {timeout:.0f} s") from None
    except FileNotFoundError:
        raise DecodeError("ffprobe is not installed (run `make setup`)") from None
    if proc.returncode != 0:
        raise DecodeError(f"cannot read video: {_last_error(proc.stderr, path)}")
    try:
        data = json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        raise DecodeError("cannot read video: ffprobe gave no usable answer") from None

    streams = [s for s in data.get("streams", [])
               if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")]
    if not streams:
        raise DecodeError("no video stream in the file")
    s = streams[0]
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


def ffmpeg_command(path: Path, stream_index: int = 0, threads: Optional[int] = None,
                   start: Optional[float] = None, max_frames: Optional[int] = None,
                   origin: float = 0.0, absolute: bool = False) -> List[str]:
    """``start`` is a frame's timestamp as ffprobe reports it; ffmpeg's ``-ss``
    counts from the file's first timestamp, ``origin``. Timestamps come out
    as in the file with ``absolute`` (always with ``start``), else from 0."""
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+info"]
    if threads:
        # The scaler is slice-threaded over every core by default: beside other
        # decoders that is a crowd of threads syncing on each 27-row frame (the
        # output is the same whatever the slicing).
        cmd += ["-threads", str(threads), "-filter_threads", str(threads)]
    if start is not None or absolute:
        cmd += ["-copyts"]
    if start is not None:
        # A segment of a long video: seek to its first keyframe (input seeking is
        # frame-accurate when decoding). Both timestamps are whole microseconds,
        # as is ffmpeg's seek target.
        cmd += ["-ss", f"{max(0.0, float(start) - origin):.6f}"]
    cmd += [
        # Absolute: a relative name with a colon ("a:b.mp4") would be a protocol.
        "-i", os.path.abspath(path),
        "-map", f"0:{stream_index}", "-an", "-sn", "-dn",
        "-fps_mode", "passthrough",
        "-vf", f"scale={WIDTH}:{HEIGHT},showinfo=checksum=0",
    ]
    if max_frames is not None:
        cmd += ["-frames:v", str(int(max_frames))]
    cmd += ["-pix_fmt", "rgb24", "-f", "rawvideo", "pipe:1"]
    return cmd


class FrameReader:
    """Streams one video's frames as uint8 arrays ``[n, 27, 48, 3]``.

    ``read()`` blocks until ``chunk`` frames (fewer at the end) are available and
    returns ``None`` after the last. ``finish()`` waits for ffmpeg and checks that
    the whole video was decoded.
    """

    def __init__(self, info: VideoInfo, threads: Optional[int] = None, chunk: int = 128,
                 start: Optional[float] = None, max_frames: Optional[int] = None, absolute: bool = False):
        self.info = info
        self.chunk = chunk
        self._timestamps: List[float] = []
        self._errors: List[str] = []
        self._error_count = 0
        self._tail: List[str] = []
        self.frames_read = 0
        self._proc = subprocess.Popen(
            ffmpeg_command(info.path, info.stream_index, threads, start, max_frames, info.start_time,
                           absolute),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
        )
        # A bigger pipe means fewer wake-ups of ffmpeg and of this process.
        try:
            fcntl.fcntl(self._proc.stdout.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True,
                                               name=f"ffmpeg-stderr-{info.path.name}")
        self._stderr_thread.start()

    def _drain_stderr(self) -> None:
        # Buffered: the pipe itself is unbuffered, and readline() on it would
        # cost one system call per byte (one line per frame from showinfo).
        stderr = io.BufferedReader(self._proc.stderr, buffer_size=1 << 16)
        for raw in iter(stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            if "pts_time:" in line and "showinfo" in line:
                m = _PTS_RE.search(line)
                if m:
                    try:
                        self._timestamps.append(float(m.group(1)))
                    except ValueError:
                        self._timestamps.append(float("nan"))
                continue
            if ("[error]" in line or "[fatal]" in line) and not any(h in line for h in HARMLESS_ERRORS):
                self._error_count += 1
                if len(self._errors) < 20:
                    self._errors.append(_one_line(re.sub(r"\[(error|fatal)\]\s*", "", line)))
            self._tail = (self._tail + [line])[-20:]

    def read(self) -> Optional[np.ndarray]:
        want = self.chunk * FRAME_BYTES
        buf = bytearray(want)
        view = memoryview(buf)
        got = 0
        stdout = self._proc.stdout
        while got < want:
            n = stdout.readinto(view[got:])
            if not n:
                break
            got += n
        frames = got // FRAME_BYTES
        if frames == 0:
            return None
        self.frames_read += frames
        return np.frombuffer(buf, dtype=np.uint8, count=frames * FRAME_BYTES).reshape(frames, HEIGHT, WIDTH, CHANNELS)

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._close()

    def _close(self) -> None:
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._stderr_thread.join(timeout=10)
        for stream in (self._proc.stdout, self._proc.stderr):
            try:
                stream.close()
            except OSError:
                pass

    def finish(self, whole_video: bool = True) -> DecodeReport:
        """Wait for ffmpeg; raise DecodeError unless the video (or, for a segment,
        the frames asked for) decoded completely. Timestamps of a whole video are
        relative to its first frame; those of a segment are left absolute."""
        self._close()
        rc = self._proc.returncode
        n = self.frames_read
        cause = self._errors[-1] if self._errors else (self._tail[-1] if self._tail else "")
        cause = _last_error(cause, self.info.path) if cause else ""
        if rc != 0:
            if rc < 0:
                raise DecodeError(f"decoder killed by signal {-rc}")
            raise DecodeError(f"decoding failed after {n} frames: {cause or f'ffmpeg exit code {rc}'}")
        if n == 0:
            raise DecodeError(f"no frame could be decoded{': ' + cause if cause else ''}")

        timestamps = self._complete_timestamps(n, relative=whole_video)
        if whole_video:
            check_coverage(self.info, timestamps, cause)
        return DecodeReport(n, timestamps, self._error_count, list(self._errors))

    def _complete_timestamps(self, n: int, relative: bool = True) -> List[float]:
        """Timestamps of the n frames read, relative to the first frame if ``relative``.

        showinfo reports every frame; where a timestamp is missing (no pts, or a
        stderr line lost), it is continued at the nominal frame rate.
        """
        step = 1.0 / self.info.fps if self.info.fps > 0 else 0.04
        ts = list(self._timestamps[:n])
        out: List[float] = []
        for i in range(n):
            t = ts[i] if i < len(ts) else float("nan")
            if not math.isfinite(t):
                t = out[-1] + step if out else 0.0
            out.append(t)
        if not relative:
            return out
        origin = out[0]
        return [t - origin for t in out]


def check_coverage(info: VideoInfo, timestamps: List[float], cause: str = "") -> None:
    """Raise DecodeError if the decoded frames stop well short of the declared duration."""
    if not info.declares_duration or not timestamps or not info.duration or info.duration <= 1.0:
        return
    step = 1.0 / info.fps if info.fps > 0 else 0.0
    span = timestamps[-1] - timestamps[0] + step
    if span < MIN_COVERAGE * info.duration:
        detail = f"; {cause}" if cause else ""
        raise DecodeError(f"file is truncated or damaged: decoding stopped at {span:.1f} s of "
                          f"{info.duration:.1f} s ({len(timestamps)} frames){detail}")


# Rough cost of one frame for one ffmpeg process: a fixed part, and a part that
# grows with the picture (decoding, and the bicubic scaler's long filters).
FRAME_COST_S = 1.5e-4
PIXEL_COST_S = 3e-9
MIN_SEGMENT_FRAMES = 250  # each segment costs an ffmpeg start and a seek (about 0.1 s)


def segment_frames(info: VideoInfo, seconds: float) -> int:
    """Frames that take one decoder about ``seconds`` for this video."""
    per_frame = FRAME_COST_S + PIXEL_COST_S * info.width * info.height
    return max(MIN_SEGMENT_FRAMES, int(seconds / per_frame))


def plan_segments(info: VideoInfo, target_frames: int, timeout: float = 120.0) -> Optional[List[dict]]:
    """Split a long video at keyframes into segments of about ``target_frames``.

    Each segment is ``{"start": pts of its first keyframe, "first": index of its
    first frame, "frames": frame count}``. Frame indices come from the packets'
    timestamps (a frame's index is the number of frames shown before it), which
    the segments' decoders then verify. None when the video is too short or its
    timestamps don't allow it.
    """
    cmd = ["ffprobe", "-v", "error", "-select_streams", str(info.stream_index), "-show_entries",
           "packet=pts_time,flags", "-of", "csv=p=0", os.path.abspath(info.path)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    pts, keys = [], []
    for line in out.splitlines():
        fields = line.strip().split(",")
        if len(fields) < 2:
            continue
        flags = fields[1]
        if "D" in flags:  # discarded by the demuxer (edit lists): never shown
            continue
        try:
            t = float(fields[0])
        except ValueError:
            return None  # a packet without a timestamp: frame indices can't be known
        pts.append(t)
        if "K" in flags:
            keys.append(t)
    total = len(pts)
    if total < 2 * target_frames or not keys:
        return None
    ordered = np.sort(np.array(pts))
    if np.any(np.diff(ordered) <= 0):
        return None  # duplicate timestamps: no unambiguous order
    starts = [0]
    for key in sorted(set(keys)):
        index = int(np.searchsorted(ordered, key))
        if index - starts[-1] >= target_frames and total - index >= target_frames // 2:
            starts.append(index)
    if len(starts) < 2:
        return None
    bounds = starts + [total]
    return [{"start": float(ordered[a]) if i else None, "first": a, "frames": b - a}
            for i, (a, b) in enumerate(zip(bounds, bounds[1:]))]


def plan_video(path: Path, split_seconds: Optional[float] = None,
               split_frames: Optional[int] = None) -> tuple:
    """Probe a video and decide its decoding tasks: ``(info, segments)``, one
    segment (the whole video) unless it is long enough to split."""
    info = probe(path)
    target = split_frames or (segment_frames(info, split_seconds) if split_seconds else None)
    segments = None
    if target and info.expected_frames and info.expected_frames >= 2 * target:
        segments = plan_segments(info, target)
    return info, segments or [{"start": None, "first": 0, "frames": None}]


def decode_seconds(info: VideoInfo, frames: Optional[int]) -> float:
    """Rough time one decoder needs for ``frames`` frames of this video."""
    n = frames if frames is not None else (info.expected_frames or 0)
    return n * (FRAME_COST_S + PIXEL_COST_S * info.width * info.height)


def ffmpeg_version() -> str:
    try:
        out = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    return out.splitlines()[0] if out else "unknown"


def default_decoder_threads(info: VideoInfo, workers: int) -> int:
    """Threads per ffmpeg: the cores shared by the decoders, more for big pictures."""
    cores = os.cpu_count() or 1
    share = max(1, cores // max(1, workers))
    pixels = info.width * info.height
    wanted = 1 if pixels <= 640 * 360 else 2 if pixels <= 1280 * 720 else 4
    return max(1, min(share, wanted))
