"""NVDEC and the ffmpeg decoders side by side, as one frame source.

Each video is routed when it is planned: large pictures NVDEC decodes go to
it (long ones in segments of a few thousand frames, one decoder session
each), the rest to the ffmpeg decoder processes (split as usual), so both
work at once. The scheduler asks ``can_take`` before it hands a video over.
A video NVDEC gives up on (a decoder error, a codec the card lacks) is
decoded again by ffmpeg, and that codec is not tried on NVDEC again in the
run. ``take_notes`` hands the executor one line per routing decision.
"""
import threading
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

from shots.frames.messages import DecodeTask, FramesReady, SegmentPlan, TaskDone, TaskFailed
from shots.frames.nvdec_source import NvdecFrameSource, refusal
from shots.frames.probe import VideoInfo, probe
from shots.frames.segments import WHOLE_VIDEO, plan_segments
from shots.frames.source import FrameSource

# Below this many pixels a frame decodes faster on one CPU core than NVDEC
# gains (a 160x90 frame: ~0.2 ms with ffmpeg) and the CPU decoders take it.
MIN_PIXELS = 640 * 360
# Frames per NVDEC task of a long video: a session starts in tens of
# milliseconds, and a 1080p session decodes ~600 frames/s.
SEGMENT_FRAMES = 4000


class MixedFrameSource(FrameSource):
    def __init__(self, nvdec: NvdecFrameSource, cpu: FrameSource, min_pixels: int = MIN_PIXELS):
        self.nvdec, self.cpu = nvdec, cpu
        self.min_pixels = min_pixels
        self._lock = threading.Lock()
        self._route: Dict[Path, str] = {}
        self._owner: Dict[int, FrameSource] = {}
        self._infos: Dict[int, VideoInfo] = {}  # NVDEC's tasks
        self._gave_frames: Set[int] = set()     # NVDEC's tasks that gave frames
        self._refused_paths: Set[Path] = set()
        self._refused_codecs: Dict[str, str] = {}
        self._notes: List[str] = []

    @property
    def capacity(self) -> int:
        return self.nvdec.capacity + self.cpu.capacity

    def take_notes(self) -> List[str]:
        with self._lock:
            notes, self._notes = self._notes, []
        return notes

    def _note(self, text: str) -> None:
        with self._lock:
            self._notes.append(text)

    def _why_cpu(self, path: Path, info: VideoInfo) -> Optional[str]:
        if path in self._refused_paths:
            return "NVDEC failed on it earlier"
        if info.codec in self._refused_codecs:
            return f"NVDEC failed on {info.codec} earlier in this run ({self._refused_codecs[info.codec]})"
        why = refusal(info)
        if why:
            return why
        if info.width * info.height < self.min_pixels:
            return f"small picture ({info.width}x{info.height}): faster on the CPU"
        return None

    def plan(self, path: Path, split: bool) -> Tuple[VideoInfo, List[SegmentPlan]]:
        info = probe(path)
        why = self._why_cpu(path, info)
        with self._lock:
            self._route[path] = "cpu" if why else "nvdec"
        if why:
            self._note(f"{path.name}: decoded by ffmpeg on the CPU: {why}")
            return self.cpu.plan(path, split)
        self._note(f"{path.name}: decoded by NVDEC on the GPU")
        segments = None
        if split and info.expected_frames and info.expected_frames >= 2 * SEGMENT_FRAMES:
            segments = plan_segments(info, SEGMENT_FRAMES)
        return info, segments or [WHOLE_VIDEO]

    def _target(self, path: Path) -> FrameSource:
        with self._lock:
            return self.nvdec if self._route.get(Path(path)) == "nvdec" else self.cpu

    def can_take(self, path: Path) -> bool:
        target = self._target(path)
        return target.idle(target.capacity) > 0

    def cost(self, info: VideoInfo, frames: Optional[int]) -> float:
        return self._target(info.path).cost(info, frames)

    def idle(self, limit: int) -> int:
        busy = len(self._owner)
        free = self.nvdec.idle(self.nvdec.capacity) + self.cpu.idle(self.cpu.capacity)
        return max(0, min(limit - busy, free))

    def submit(self, task: DecodeTask) -> None:
        target = self._target(task.info.path)
        self._owner[task.task_id] = target
        if target is self.nvdec:
            self._infos[task.task_id] = task.info
        target.submit(task)

    def cancel(self, task_id: int) -> None:
        owner = self._owner.get(task_id)
        if owner is not None:
            owner.cancel(task_id)

    def poll(self, timeout: float) -> list:
        out = self.nvdec.poll(0)
        # The ffmpeg source waits on its pipes; NVDEC's queue is read again after.
        waiting_on_gpu = any(o is self.nvdec for o in self._owner.values())
        out += self.cpu.poll(0 if out else min(timeout, 0.005) if waiting_on_gpu else timeout)
        out += self.nvdec.poll(0)
        for message in out:
            if isinstance(message, FramesReady) and message.task_id in self._infos:
                self._gave_frames.add(message.task_id)
            if isinstance(message, TaskFailed) and message.fallback:
                self._gave_up(message)
            if isinstance(message, (TaskDone, TaskFailed)):
                self._owner.pop(message.task_id, None)
                self._infos.pop(message.task_id, None)
                self._gave_frames.discard(message.task_id)
        return out

    def _gave_up(self, message: TaskFailed) -> None:
        """Remember a video NVDEC failed on, and its codec if not one frame came."""
        info = self._infos.pop(message.task_id, None)
        if info is None:
            return
        with self._lock:
            self._refused_paths.add(Path(info.path))
            if message.task_id not in self._gave_frames:
                self._refused_codecs.setdefault(info.codec, message.cause)
        self._gave_frames.discard(message.task_id)

    def close(self) -> None:
        try:
            self.nvdec.close()
        finally:
            self.cpu.close()
