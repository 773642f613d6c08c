"""The frame-source seam: where decoded frames come from.

A frame source turns decoding tasks into frames, in order, task by task. The
scheduler (shots/scheduler.py) sees only this interface and the messages of
messages.py, never which decoder it has: today ffmpeg in spawned processes
(ffmpeg_source.py); a GPU decoder can be another, whose chunks may hold
frames already on the GPU.
"""
from abc import ABC, abstractmethod
from pathlib import Path
from typing import List, Optional, Tuple

from shots.frames.messages import DecodeTask, SegmentPlan
from shots.frames.probe import VideoInfo


class FrameSource(ABC):
    @property
    @abstractmethod
    def capacity(self) -> int:
        """Tasks it can run at once."""

    @abstractmethod
    def plan(self, path: Path, split: bool) -> Tuple[VideoInfo, List[SegmentPlan]]:
        """Probe a video and cut it into tasks (one, unless ``split`` allows
        more and the video is long). Raises DecodeError with the cause.
        Called from several threads at once."""

    @abstractmethod
    def cost(self, info: VideoInfo, frames: Optional[int]) -> float:
        """Rough seconds of decoding for ``frames`` frames (None: all) of a
        video, in proportion to the frames (the scheduler sums frames first)."""

    @abstractmethod
    def idle(self, limit: int) -> int:
        """How many more tasks it can take now, with at most ``limit`` running."""

    @abstractmethod
    def submit(self, task: DecodeTask) -> None:
        """Start a task (only while ``idle()`` says there is room)."""

    @abstractmethod
    def cancel(self, task_id: int) -> None:
        """Stop a task; a TaskFailed(cancelled=True) follows unless it had ended."""

    @abstractmethod
    def poll(self, timeout: float) -> list:
        """FramesReady / TaskDone / TaskFailed messages that arrived within
        ``timeout`` seconds, in order for each task."""

    @abstractmethod
    def close(self) -> None:
        """Stop every decoder and free every buffer."""
