"""NVDEC and the ffmpeg decoders side by side, as one frame source.

Every video NVDEC can decode is cut into segments either side can take, and
each segment goes to whichever side is free when its turn comes: large
pictures to NVDEC first, small ones to the ffmpeg decoders first (a 160x90
frame costs one CPU core ~0.2 ms, less than an NVDEC session's own
overhead). A side takes the other's kind of work only when that shortens
the run: the CPU takes a large-picture segment only while NVDEC has more
than that segment's CPU time still waiting for each session, and NVDEC takes
a small-picture segment only when no large one waits and it would finish
before the CPU's queue drains. So both kinds of decoder work at once and
neither leaves a long tail. A video NVDEC gives up on (a decoder error, a
seek that does not land, a codec the card lacks) is decoded again by
ffmpeg; a codec the card lacks is not tried on NVDEC again in the run, and
when every NVDEC session has been given up (stalled) all goes to the CPU.
``take_notes`` hands the executor one line per video saying where it goes.
"""
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

from shots.frames.messages import DecodeTask, SegmentPlan, TaskDone, TaskFailed
from shots.frames.nvdec_source import NvdecFrameSource, nvdec_seconds, refusal
from shots.frames.probe import VideoInfo
from shots.frames.segments import MIN_SEGMENT_FRAMES, WHOLE_VIDEO, plan_segments, plan_video
from shots.frames.source import FrameSource

# Below this many pixels a frame goes to the CPU decoders first.
MIN_PIXELS = 640 * 360
# Seconds of one NVDEC session per segment of a large picture: a task costs
# a decoder's start and a seek (tens of milliseconds).
SEGMENT_SECONDS = 2.0
# Containers where ThreadedDecoder's seek by frame index is reliable (it
# reckons by the nominal frame rate and warns for Matroska/WebM, FLV and MOV,
# and scans a whole Matroska file for its length before each seek): others
# go to NVDEC whole, the CPU decoders taking their segments as usual.
NVDEC_SEGMENT_SUFFIXES = {".mp4", ".m4v"}
# The CPU's estimate (segments.decode_seconds) is optimistic on large
# pictures when the NVDEC threads share the cores: a CPU decoder takes a
# large-picture segment only with this margin.
CPU_MARGIN = 1.5


@dataclass
class _Video:
    info: VideoInfo
    nvdec_first: bool         # a large picture
    either: bool              # NVDEC may decode it
    waiting: Dict[int, int]   # segment's first frame -> its frames, not submitted yet

    def seconds(self, cost, frames: Optional[int] = None) -> float:
        """``cost`` of ``frames`` of it (None: all its waiting frames)."""
        return cost(self.info, sum(self.waiting.values()) if frames is None else frames)


class MixedFrameSource(FrameSource):
    def __init__(self, nvdec: NvdecFrameSource, cpu: FrameSource, min_pixels: int = MIN_PIXELS):
        self.nvdec, self.cpu = nvdec, cpu
        self.min_pixels = min_pixels
        self._lock = threading.Lock()
        self._videos: Dict[Path, _Video] = {}
        self._owner: Dict[int, FrameSource] = {}
        self._infos: Dict[int, VideoInfo] = {}  # NVDEC's tasks
        self._refused_paths: Set[Path] = set()
        self._refused_codecs: Dict[str, str] = {}
        self._notes: List[str] = []
        self._queued = {True: 0.0, False: 0.0}  # waiting seconds, NVDEC-first and CPU-first

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
        return refusal(info)

    # -- planning ---------------------------------------------------------------------------
    def plan(self, path: Path, split: bool) -> Tuple[VideoInfo, List[SegmentPlan]]:
        info, segments = plan_video(path)  # probed; split below by the side it goes to first
        why = self._why_cpu(Path(path), info)
        big = info.width * info.height >= self.min_pixels
        if why or not big:
            info, segments = self.cpu.plan(path, split)  # segments sized for a CPU decoder
        if why:
            self._note(f"{path.name}: decoded by ffmpeg on the CPU: {why}")
        elif big:
            self._note(f"{path.name}: decoded by NVDEC on the GPU (ffmpeg takes segments when NVDEC is busy)")
            target = max(MIN_SEGMENT_FRAMES, int(SEGMENT_SECONDS / nvdec_seconds(info, 1)))
            seekable = Path(path).suffix.lower() in NVDEC_SEGMENT_SUFFIXES
            if split and seekable and info.expected_frames and info.expected_frames >= 2 * target:
                segments = plan_segments(info, target) or segments
        else:
            self._note(f"{path.name}: decoded by ffmpeg on the CPU, small picture ({info.width}x{info.height}); "
                       f"NVDEC takes segments when it is idle")
        waiting = {s.first: s.frame_count(info.expected_frames) for s in segments}
        video = _Video(info, big and not why, not why, waiting)
        with self._lock:
            self._drop(Path(path))  # planned again (a fallback, a segment redone in one piece)
            self._videos[Path(path)] = video
            self._queued[video.nvdec_first] += video.seconds(self._cost_of(video))
        return info, segments or [WHOLE_VIDEO]

    def _cost_of(self, video: _Video):
        return self.nvdec.cost if video.nvdec_first else self.cpu.cost

    def _drop(self, path: Path) -> None:
        """Its waiting work no longer counts (under the lock)."""
        video = self._videos.pop(path, None)
        if video is not None:
            left = self._queued[video.nvdec_first] - video.seconds(self._cost_of(video))
            self._queued[video.nvdec_first] = max(0.0, left)

    def forget_video(self, path: Path) -> None:
        """The video is done, failed or starts over (the scheduler's forget)."""
        with self._lock:
            self._drop(Path(path))

    # -- routing -----------------------------------------------------------------------------
    def _waiting_seconds(self) -> Tuple[float, float]:
        """Work not handed out yet: (NVDEC-first seconds per NVDEC session,
        CPU-first seconds per CPU decoder). Kept as running totals: this is
        asked for every ready video on every turn with a free slot."""
        with self._lock:
            on_gpu, on_cpu = self._queued[True], self._queued[False]
        return on_gpu / max(1, self.nvdec.capacity), on_cpu / max(1, self.cpu.capacity)

    def _target(self, info: VideoInfo, frames: Optional[int]) -> Optional[FrameSource]:
        """The side that should take this task now (None: neither, for now)."""
        with self._lock:
            video = self._videos.get(Path(info.path))
        if video is None or not video.either or not self.nvdec.capacity:  # no session left: all to the CPU
            return self.cpu if self.cpu.idle(self.cpu.capacity) else None
        first, second = (self.nvdec, self.cpu) if video.nvdec_first else (self.cpu, self.nvdec)
        if first.idle(first.capacity):
            return first
        if not second.idle(second.capacity):
            return None
        gpu_queue, cpu_queue = self._waiting_seconds()
        if second is self.cpu:
            return self.cpu if CPU_MARGIN * self.cpu.cost(info, frames) <= gpu_queue else None
        return self.nvdec if gpu_queue == 0 and nvdec_seconds(info, frames) <= cpu_queue else None

    def can_take(self, path: Path, frames: Optional[int] = None) -> bool:
        with self._lock:
            video = self._videos.get(Path(path))
        if video is None:  # not planned here (or forgotten): the CPU's, as _target says
            return self.cpu.idle(self.cpu.capacity) > 0
        return self._target(video.info, frames) is not None

    def cost(self, info: VideoInfo, frames: Optional[int]) -> float:
        with self._lock:
            video = self._videos.get(Path(info.path))
        if video is not None and video.nvdec_first:
            return nvdec_seconds(info, frames)
        return self.cpu.cost(info, frames)

    def idle(self, limit: int) -> int:
        busy = len(self._owner)
        free = self.nvdec.idle(self.nvdec.capacity) + self.cpu.idle(self.cpu.capacity)
        return max(0, min(limit - busy, free))

    def submit(self, task: DecodeTask) -> None:
        target = self._target(task.info, task.segment.frames)
        assert target is not None, "submit() of a task neither side takes now"
        with self._lock:
            video = self._videos.get(Path(task.info.path))
            frames = video.waiting.pop(task.segment.first, None) if video is not None else None
            if frames is not None:
                left = self._queued[video.nvdec_first] - video.seconds(self._cost_of(video), frames)
                self._queued[video.nvdec_first] = max(0.0, left)
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
            if isinstance(message, TaskFailed) and message.fallback:
                self._gave_up(message)
            if isinstance(message, (TaskDone, TaskFailed)):
                self._owner.pop(message.task_id, None)
                self._infos.pop(message.task_id, None)
        return out

    def _gave_up(self, message: TaskFailed) -> None:
        """Remember a video NVDEC failed on, and its codec if the card cannot decode it at all."""
        info = self._infos.pop(message.task_id, None)
        if info is None:
            return
        with self._lock:
            self._refused_paths.add(Path(info.path))
            if message.codec_unsupported:
                self._refused_codecs.setdefault(info.codec, message.cause)

    def close(self) -> None:
        try:
            self.nvdec.close()
        finally:
            self.cpu.close()
