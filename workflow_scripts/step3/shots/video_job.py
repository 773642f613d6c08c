"""One video's way through a run: its decoding segments, frames in and
windows out, predictions in and a ``VideoPrediction`` out.

A job is restarted (``reset``) when its decoding must start over: in one
piece after its segments disagreed with their plan, or on the CPU after a
GPU failure. Its ``generation`` then changes, and whatever was in flight for
the old one (decoding tasks, windows, batches) is recognised and dropped.
"""
import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Deque, Dict, List, Optional, Set, Tuple

import numpy as np

from shots import windows as win
from shots.frames.ffmpeg_reader import check_coverage
from shots.frames.messages import DecodeReport, FrameChunk, SegmentPlan
from shots.frames.probe import VideoInfo
from stepkit.scene_results import ResultPaths


def start_tolerance(start: float) -> float:
    """How far a segment's first timestamp may be from its planned start: a
    millisecond, or the precision of the decoders' six significant digits
    (showinfo's ``%.6g``: 1019.52 for a frame at 1019.5195 s)."""
    if start == 0:
        return 1e-3
    return max(1e-3, 10.0 ** (math.floor(math.log10(abs(start))) - 5))


class SegmentMismatch(Exception):
    """A segment did not decode as planned (an odd file's keyframes or
    timestamps): the video is decoded again in one piece. The message says how."""


@dataclass
class Segment:
    plan: SegmentPlan
    task_id: Optional[int] = None
    chunks: Deque[FrameChunk] = field(default_factory=deque)  # decoded, not yet read
    report: Optional[DecodeReport] = None                     # set when its decoding is done


@dataclass
class VideoPrediction:
    """What the model said about a whole video, and how it was decoded."""
    info: VideoInfo
    timestamps: List[float]     # of every frame, from the first frame's
    single_frame: np.ndarray    # per-frame probabilities of the two heads
    all_frames: np.ndarray
    decode_errors: int
    decode_messages: List[str]
    segments: int
    backends: Set[Tuple[str, str, str]]  # (device, precision, implementation) that ran it
    inference_seconds: float
    model_load_seconds: float = 0.0
    decoders: Set[str] = field(default_factory=set)  # frame sources that decoded it ("ffmpeg", "nvdec")


@dataclass(eq=False)  # compared and hashed by identity: jobs live in sets
class VideoJob:
    index: int
    path: Path
    name: str
    paths: ResultPaths
    generation: int = 0
    on_cpu: bool = False
    allow_segments: bool = True
    finished: bool = False
    info: Optional[VideoInfo] = None
    segments: List[Segment] = field(default_factory=list)
    current: int = 0  # the segment being read
    builder: win.WindowBuilder = field(default_factory=win.WindowBuilder)
    timestamps: List[float] = field(default_factory=list)
    windows_made: int = 0
    windows_total: Optional[int] = None
    outputs: Dict[int, np.ndarray] = field(default_factory=dict)
    error_count: int = 0
    error_messages: List[str] = field(default_factory=list)
    inference_seconds: float = 0.0
    backends: Set[Tuple[str, str, str]] = field(default_factory=set)
    decoders: Set[str] = field(default_factory=set)

    def reset(self) -> None:
        """Forget everything decoded or predicted; the video starts over."""
        keep = dict(index=self.index, path=self.path, name=self.name, paths=self.paths,
                    generation=self.generation + 1, on_cpu=self.on_cpu, allow_segments=self.allow_segments)
        self.__init__(**keep)

    # -- decoding ---------------------------------------------------------------------
    def planned(self, info: VideoInfo, plans: List[SegmentPlan]) -> None:
        self.info = info
        self.segments = [Segment(p) for p in plans]

    def waiting_segments(self) -> List[Segment]:
        """Segments not yet handed to a decoder, in order."""
        return [s for s in self.segments if s.task_id is None]

    def next_chunk(self) -> Optional[FrameChunk]:
        if self.current < len(self.segments) and self.segments[self.current].chunks:
            return self.segments[self.current].chunks.popleft()
        return None

    def push(self, frames: np.ndarray) -> List[np.ndarray]:
        """Frames of the segment being read, in order -> the windows they complete."""
        return self._numbered(self.builder.push(frames))

    def advance(self) -> Optional[List[np.ndarray]]:
        """After the current segment's last chunk: move to the next segment if
        its decoding is done (None while it is not). At the end of the video,
        the last windows. Raises SegmentMismatch, or DecodeError for a video
        that stops well short of its length."""
        if self.current >= len(self.segments) or self.windows_total is not None:
            return None
        seg = self.segments[self.current]
        if seg.report is None:
            return None  # waiting for its decoder
        self._check_segment(seg)
        self.timestamps.extend(seg.report.timestamps)
        self.error_count += seg.report.error_count
        self.error_messages += seg.report.error_messages
        self.decoders.add(seg.report.decoder)
        self.current += 1
        if self.current < len(self.segments):
            return []
        return self._end_of_video()

    def _check_segment(self, seg: Segment) -> None:
        got, plan = seg.report.frame_count, seg.plan
        first = seg.report.timestamps[0] if seg.report.timestamps else None
        if plan.frames is None or (got == plan.frames and (plan.start is None or
                                                          abs(first - plan.start) < start_tolerance(plan.start))):
            return
        if got != plan.frames:
            what = f"gave {got} frames instead of {plan.frames}"
        elif first is None:
            what = "gave no frame"
        else:
            what = f"started at {first:.3f} s instead of {plan.start:.3f} s"
        raise SegmentMismatch(f"the segment at frame {plan.first} {what}")

    def _end_of_video(self) -> List[np.ndarray]:
        origin = self.timestamps[0] if self.timestamps else 0.0
        self.timestamps = [t - origin for t in self.timestamps]
        check_coverage(self.info, self.timestamps, self.error_messages[-1] if self.error_messages else "")
        made = self._numbered(self.builder.finish())
        self.windows_total = self.windows_made
        return made

    def _numbered(self, made: List[np.ndarray]) -> List[np.ndarray]:
        self.windows_made += len(made)
        return made

    # -- predictions ------------------------------------------------------------------
    def predicted(self, number: int, probs: np.ndarray, seconds: float, backend: Tuple[str, str, str]) -> None:
        self.outputs[number] = probs
        self.inference_seconds += seconds
        self.backends.add(backend)

    @property
    def complete(self) -> bool:
        return self.windows_total is not None and len(self.outputs) >= self.windows_total

    def frames_done(self) -> Tuple[int, int]:
        """(frames predicted, frames in the video) for the progress lines; the
        container's frame count is an estimate until the decoder has finished."""
        if self.windows_total is not None:
            total = len(self.timestamps)
        else:
            total = (self.info.expected_frames if self.info else None) or 0
        done = len(self.outputs) * win.STRIDE
        if total:
            done = min(done, total)  # the last window holds padding frames
        return done, total

    def prediction(self) -> VideoPrediction:
        n = len(self.timestamps)
        ordered = [self.outputs[k] for k in range(self.windows_total)]
        return VideoPrediction(
            info=self.info, timestamps=self.timestamps,
            single_frame=win.assemble([o[0] for o in ordered], n),
            all_frames=win.assemble([o[1] for o in ordered], n),
            decode_errors=self.error_count, decode_messages=list(self.error_messages),
            segments=len(self.segments), backends=set(self.backends), inference_seconds=self.inference_seconds,
            decoders=set(self.decoders))

