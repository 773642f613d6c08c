"""NVDEC and the ffmpeg decoders side by side, as one frame source.

Every video NVDEC can decode is cut into segments (sized for the ffmpeg
decoders, as the run's segment options say) either side can take: large
pictures go to NVDEC first, small ones to the ffmpeg decoders first (a
160x90 frame costs one CPU core ~0.2 ms, less than an NVDEC session's own
overhead). NVDEC never seeks (nvdec_source.py says why): a session starts a
video at its first segment and goes on with the next ones in order, its
decoder kept open between them. The ffmpeg decoders help with a
large-picture video from its other end: they take its last waiting segment,
and only when they will have decoded it, with a margin, before NVDEC gets
there. NVDEC takes a small-picture video's first segment only when no large
one waits and it would finish before the CPU's queue drains. So both kinds
of decoder work at once and neither leaves a long tail. A video NVDEC gives
up on (a decoder error, a codec the card lacks) is decoded again by ffmpeg;
a codec the card lacks is not tried on NVDEC again in the run, and when
every NVDEC session has been given up (stalled) all goes to the CPU.
``take_notes`` hands the executor one line per video saying where it goes.
"""
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

from shots.frames.messages import DecodeTask, SegmentPlan, TaskDone, TaskFailed
from shots.frames.nvdec_source import NvdecFrameSource, refusal, stands_at
from shots.frames.probe import VideoInfo
from shots.frames.source import FrameSource

# Below this many pixels a frame goes to the CPU decoders first.
MIN_PIXELS = 640 * 360
# The CPU's estimate (segments.decode_seconds) is optimistic on large
# pictures when the NVDEC threads share the cores (one ffmpeg thread: ~100
# full-HD frames/s on the H200's host against 156 estimated): a CPU decoder
# takes a large-picture segment only with this margin.
CPU_MARGIN = 1.5


@dataclass
class _Video:
    """A planned video's segments not submitted yet, in order (they leave from
    either end), and their frames: asked on every turn with a free slot, so
    nothing here walks the segments."""
    info: VideoInfo
    nvdec_first: bool         # a large picture
    either: bool              # NVDEC may decode it
    waiting: Dict[int, int]   # segment's first frame -> its frames, in order
    frames: int = 0           # their sum

    def __post_init__(self):
        self.frames = sum(self.waiting.values())

    @property
    def head(self) -> Optional[int]:
        return next(iter(self.waiting), None)

    @property
    def tail(self) -> Optional[int]:
        return next(reversed(self.waiting), None)

    def take(self, first: int) -> Optional[int]:
        frames = self.waiting.pop(first, None)
        self.frames -= frames or 0
        return frames

    def seconds(self, cost, frames: Optional[int] = None) -> float:
        """``cost`` of ``frames`` of it (None: all its waiting frames)."""
        return cost(self.info, self.frames if frames is None else frames)


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
        # Segments sized for a CPU decoder: NVDEC goes from one to the next
        # without a pause, and a segment the CPU takes from the end is short.
        # (A prober thread runs this; what the plan means here is set in planned().)
        return self.cpu.plan(path, split)

    def planned(self, path: Path, info: VideoInfo, segments: List[SegmentPlan]) -> None:
        """The scheduler keeps this plan (on its own thread, after dropping
        stale ones): from now on its segments are routed."""
        why = self._why_cpu(Path(path), info)
        big = info.width * info.height >= self.min_pixels
        if why:
            self._note(f"{path.name}: decoded by ffmpeg on the CPU: {why}")
        elif big:
            self._note(f"{path.name}: decoded by NVDEC on the GPU (ffmpeg takes segments from its end when "
                       f"NVDEC is busy)")
        else:
            self._note(f"{path.name}: decoded by ffmpeg on the CPU, small picture ({info.width}x{info.height}); "
                       f"NVDEC takes segments when it is idle")
        waiting = {s.first: s.frame_count(info.expected_frames) for s in segments}
        video = _Video(info, big and not why, not why, waiting)
        with self._lock:
            self._drop(Path(path))  # planned again (a fallback, a segment redone in one piece)
            self._videos[Path(path)] = video
            self._queued[video.nvdec_first] += video.seconds(self._cost_of(video))

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

    def _nvdec_session(self, info: VideoInfo, first: int) -> Optional[int]:
        """The idle NVDEC session for a task from frame ``first`` of this
        video's plan: the one whose decoder stands there, or, for a video's
        first frame, one that is not kept for another video's next segment."""
        idle = self.nvdec.idle_positions()
        for number, position in idle.items():
            if stands_at(position, info, first):
                return number
        if first:
            return None
        free = [n for n, position in idle.items() if position is None or not self._kept(position)]
        return free[0] if free else None

    def _kept(self, position: Tuple[VideoInfo, int]) -> bool:
        """A session standing at a video's next waiting segment (of the plan
        it has now) is kept for it."""
        info, first = position
        with self._lock:
            video = self._videos.get(Path(info.path))
            return video is not None and video.info is info and video.head == first

    def _on_nvdec(self, info: VideoInfo) -> bool:
        """A task of this plan of the video is on NVDEC now."""
        return any(running is info for running in list(self._infos.values()))

    def _route(self, video: _Video, seg: SegmentPlan) -> Optional[Tuple[FrameSource, Optional[int]]]:
        """(side, NVDEC session) that should take segment ``seg`` of ``video``
        now, or None: neither, for now."""
        cpu_free = self.cpu.idle(self.cpu.capacity) > 0
        if not video.either or not self.nvdec.capacity:  # no session left: all to the CPU
            return (self.cpu, None) if cpu_free else None
        session = self._nvdec_session(video.info, seg.first)
        with self._lock:
            head, tail = video.head, video.tail
        if session is not None and seg.first:  # its decoder stands there, open: always NVDEC's
            return self.nvdec, session
        if video.nvdec_first:
            if session is not None:
                return self.nvdec, session
            if not cpu_free:
                return None
            if seg.first == head and seg.first and not self._on_nvdec(video.info):
                return self.cpu, None  # no session stands there or will: the CPU goes on with it
            last = tail is None or seg.first == tail
            return (self.cpu, None) if last and self._cpu_may_take(video, seg) else None
        if cpu_free:
            return self.cpu, None
        gpu_queue, cpu_queue = self._waiting_seconds()
        frames = seg.frame_count(video.info.expected_frames)
        if session is not None and gpu_queue == 0 and self.nvdec.cost(video.info, frames) <= cpu_queue:
            return self.nvdec, session
        return None

    def _cpu_may_take(self, video: _Video, seg: SegmentPlan) -> bool:
        """The CPU takes a large picture's last segment when it will be done,
        with the margin, before NVDEC (one session, in order) gets there."""
        info = video.info
        with self._lock:
            before = self.nvdec.cost(info, video.frames - video.waiting.get(seg.first, 0))
        if not self._on_nvdec(info):  # no session on it yet: the other videos' turn first
            before += self._waiting_seconds()[0]
        return CPU_MARGIN * self.cpu.cost(info, seg.frame_count(info.expected_frames)) <= before

    def choose(self, path: Path, first: SegmentPlan, last: SegmentPlan) -> Optional[SegmentPlan]:
        """Which of a video's waiting segments to submit now: its ``first``,
        its ``last`` (the CPU helping NVDEC from the end), or None."""
        with self._lock:
            video = self._videos.get(Path(path))
        if video is None:  # not planned here (or forgotten): the CPU's
            return first if self.cpu.idle(self.cpu.capacity) else None
        for seg in (first, last) if video.nvdec_first and last is not first else (first,):
            if self._route(video, seg) is not None:
                return seg
        return None

    def cost(self, info: VideoInfo, frames: Optional[int]) -> float:
        with self._lock:
            video = self._videos.get(Path(info.path))
        return (self._cost_of(video) if video is not None else self.cpu.cost)(info, frames)

    def idle(self, limit: int) -> int:
        busy = len(self._owner)
        free = self.nvdec.idle(self.nvdec.capacity) + self.cpu.idle(self.cpu.capacity)
        return max(0, min(limit - busy, free))

    def submit(self, task: DecodeTask) -> None:
        with self._lock:
            video = self._videos.get(Path(task.info.path))
        route = self._route(video, task.segment) if video is not None else \
            ((self.cpu, None) if self.cpu.idle(self.cpu.capacity) else None)
        if route is None:
            raise RuntimeError("submit() of a task neither side takes now")
        target, session = route
        with self._lock:
            frames = video.take(task.segment.first) if video is not None else None
            if frames is not None:
                left = self._queued[video.nvdec_first] - video.seconds(self._cost_of(video), frames)
                self._queued[video.nvdec_first] = max(0.0, left)
        self._owner[task.task_id] = target
        if target is self.nvdec:
            self._infos[task.task_id] = task.info
            self.nvdec.submit(task, session)
        else:
            self.cpu.submit(task)

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
        self.nvdec.end_unneeded(self._kept)
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
