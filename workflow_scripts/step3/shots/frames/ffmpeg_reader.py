"""Frames for TransNetV2, exactly as the official inference makes them.

The official code pipes ``ffmpeg -i VIDEO -f rawvideo -pix_fmt rgb24 -s 48x27 -``:
RGB, 48x27, resized by ffmpeg's default (bicubic) scaler, which other resizers
do not reproduce. So the decoder *is* ffmpeg, one process per video (or per
segment of a long one), streamed through a pipe: memory stays flat whatever
the video's length.

Two deliberate differences from that command, neither of which changes a pixel:
- ``-fps_mode passthrough``: the rawvideo muxer would otherwise duplicate or drop
  frames of variable-frame-rate input to fit a constant rate; frames are counted
  as decoded instead.
- a ``showinfo`` filter after the scaler reports each frame's timestamp on
  stderr, so timecodes follow the real timestamps.
"""
import fcntl
import io
import math
import os
import re
import subprocess
import threading
from pathlib import Path
from typing import List, Optional

import numpy as np

from shots.frames.messages import DecodeReport
from shots.frames.probe import DecodeError, VideoInfo, one_line, tool_error


HEIGHT, WIDTH, CHANNELS = 27, 48, 3
FRAME_BYTES = HEIGHT * WIDTH * CHANNELS
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PIPE_SIZE = 1 << 20
# Decoded span below this share of the declared duration: the file is truncated.
MIN_COVERAGE = 0.9

_PTS_RE = re.compile(r"\bn:\s*\d+\s+pts:\s*\S+\s+pts_time:(\S+)")
# Messages ffmpeg logs at error level that are no decoding error: the rawvideo
# muxer complains about equal timestamps of variable-frame-rate input, which
# it fixes itself (every frame is still written, in order).
HARMLESS_ERRORS = ("non monotonically increasing dts",)


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
    the frames asked for were decoded.
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
                    self._errors.append(one_line(re.sub(r"\[(error|fatal)\]\s*", "", line)))
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

    def finish(self) -> DecodeReport:
        """Wait for ffmpeg; raise DecodeError unless the frames asked for (all of
        them, without ``max_frames``) decoded. Timestamps are the file's own; the
        caller checks the whole video's coverage (``check_coverage``) once its
        segments are joined."""
        self._close()
        rc = self._proc.returncode
        n = self.frames_read
        cause = self._errors[-1] if self._errors else (self._tail[-1] if self._tail else "")
        cause = tool_error(cause, self.info.path) if cause else ""
        if rc != 0:
            if rc < 0:
                raise DecodeError(f"decoder killed by signal {-rc}")
            raise DecodeError(f"decoding failed after {n} frames: {cause or f'ffmpeg exit code {rc}'}")
        if n == 0:
            raise DecodeError(f"no frame could be decoded{': ' + cause if cause else ''}")
        return DecodeReport(n, self._complete_timestamps(n), self._error_count, list(self._errors))

    def _complete_timestamps(self, n: int) -> List[float]:
        """Timestamps of the n frames read.

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
        return out


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
