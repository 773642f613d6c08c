"""The typed messages between a frame source and the scheduler that uses it.

Scheduler -> source: ``DecodeTask`` (a whole video, or one keyframe-aligned
segment of a long one). Source -> scheduler, in order for one task: any
number of ``FramesReady``, then one ``TaskDone`` or one ``TaskFailed``.

A ``FrameChunk`` is frames that may still sit in the source's own buffers
(the shared-memory ring of an ffmpeg decoder process, a GPU decoder's
surface): ``take()`` hands them over and frees the buffer, ``drop()`` frees it
unread, ``detach()`` copies them out so the buffer is freed before their turn
(read-ahead). The scheduler never needs to know where the frames are.
"""
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from shots.frames.probe import VideoInfo


@dataclass(frozen=True)
class SegmentPlan:
    start: Optional[float]   # pts of its first keyframe (None: the video's start)
    first: int               # index of its first frame in the video
    frames: Optional[int]    # frame count (None: to the end of the video)

    def frame_count(self, expected: Optional[int]) -> int:
        """Its frames, for a video of ``expected`` frames (0 when not known)."""
        return self.frames if self.frames is not None else max(0, (expected or 0) - self.first)


@dataclass(frozen=True)
class DecodeTask:
    task_id: int
    info: VideoInfo
    segment: SegmentPlan
    threads: Optional[int] = None  # decoder threads (None: the source decides)


@dataclass
class DecodeReport:
    """How a task's decoding went: its frames' timestamps (the file's own) and
    the errors the decoder concealed."""
    frame_count: int
    timestamps: List[float]
    error_count: int
    error_messages: List[str] = field(default_factory=list)
    decoder: str = "ffmpeg"  # which frame source decoded it ("ffmpeg", "nvdec")


class FrameChunk:
    """Consecutive frames of one task, uint8 ``[n, 27, 48, 3]`` once taken."""

    frames: int = 0
    # Whether it occupies the source's buffers (a decoder waits for them to be freed).
    holds_source_buffer: bool = False

    def take(self) -> np.ndarray:
        raise NotImplementedError

    def drop(self) -> None:
        raise NotImplementedError

    def detach(self) -> "FrameChunk":
        raise NotImplementedError


class MemoryChunk(FrameChunk):
    """Frames already in this process's memory."""

    def __init__(self, frames: np.ndarray):
        self._array = frames
        self.frames = frames.shape[0]

    def take(self) -> np.ndarray:
        return self._array

    def drop(self) -> None:
        self._array = None

    def detach(self) -> "FrameChunk":
        return self


@dataclass(frozen=True)
class FramesReady:
    task_id: int
    chunk: FrameChunk


@dataclass(frozen=True)
class TaskDone:
    task_id: int
    report: DecodeReport


@dataclass(frozen=True)
class TaskFailed:
    task_id: int
    cause: str               # one line
    cancelled: bool = False  # stopped because the scheduler asked
    fallback: bool = False   # the GPU decoder gave up: decode the video again on the CPU
    codec_unsupported: bool = False  # ... and cannot decode this codec at all (not worth trying again)
