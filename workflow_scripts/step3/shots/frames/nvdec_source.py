"""A frame source on the GPU's video decoders (NVDEC, through PyNvVideoCodec).

Decoder threads live in the model's process (the only process that touches
the GPU). Each runs one task at a time: its own demuxer and decoder, the
decoded NV12/P016 surfaces copied into a batch in device memory, then
converted in one go to the 48x27 RGB frames ffmpeg's default scaler makes
(swscale_exact.py, yuv_to_rgb.py: identical bytes). Timestamps are computed
as STEP3's ffmpeg command prints them, so results are the same files.

Anything it cannot do ends the task with ``TaskFailed(fallback=True)``: the
executor decodes that video again with ffmpeg on the CPU.
"""
import queue
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Dict, List, Optional

import numpy as np

from shots.frames.messages import (DecodeReport, DecodeTask, FrameChunk, FramesReady, MemoryChunk, TaskDone,
                                   TaskFailed)
from shots.frames.probe import VideoInfo
from shots.frames.segments import decode_seconds, plan_video
from shots.frames.swscale_exact import NotExact, scale_plan

SESSIONS = 8           # decoder threads: 7 NVDEC engines on an H100/H200; 7 threads 4.2k 1080p frames/s, 14: 4.5k
BATCH_FRAMES = 32      # surfaces converted at once (a 1080p batch: 100 MB of device memory)
CHUNKS_AHEAD = 64      # converted batches a thread may hold unread (48x27 frames: 8 MB)
# Codecs handed to NVDEC (ffprobe's names); 4:2:0 8- and 10-bit only.
CODECS = {"h264", "hevc", "vp9", "av1", "vp8", "mpeg2video", "mpeg1video"}
PIX_FMTS = {"yuv420p": (0, "yuv420p"), "yuvj420p": (0, "yuvj420p"), "yuv420p10le": (6, "yuv420p10le")}


class NvdecUnavailable(Exception):
    """No NVIDIA GPU or no PyNvVideoCodec here. The message says which."""


def load_library():
    """PyNvVideoCodec, or NvdecUnavailable with the reason."""
    try:
        import torch
        if not torch.cuda.is_available():
            raise NvdecUnavailable("no CUDA GPU")
        import PyNvVideoCodec
    except NvdecUnavailable:
        raise
    except Exception as exc:  # ImportError, or a library that fails to load (no driver)
        raise NvdecUnavailable(f"PyNvVideoCodec cannot be loaded ({type(exc).__name__}: {exc}); "
                               f"install requirements/transnet_env_gpu.txt") from None
    return PyNvVideoCodec


def refusal(info: VideoInfo) -> Optional[str]:
    """Why NVDEC + the exact conversion cannot take this video (None: it can)."""
    if info.codec not in CODECS:
        return f"codec {info.codec} is not decoded by NVDEC here"
    if info.pix_fmt not in PIX_FMTS:
        return f"pixel format {info.pix_fmt or 'unknown'} (NVDEC here: 4:2:0, 8 or 10 bits)"
    if info.width % 2 or info.height % 2:
        return f"odd picture size {info.width}x{info.height}"
    try:
        scale_plan(info.width, info.height, info.pix_fmt, info.color_space, _full_range(info))
    except NotExact as exc:
        return f"ffmpeg's scaler takes another path there ({exc})"
    return None


def _full_range(info: VideoInfo) -> Optional[bool]:
    return True if info.color_range == "pc" else None


def ffmpeg_time(pts: int, offset: int, time_base: Fraction) -> float:
    """A frame's time as showinfo prints it (``%.6g`` of pts times the time base)."""
    return float("%.6g" % ((pts - offset) * (time_base.numerator / time_base.denominator)))


def start_offset(info: VideoInfo, time_base: Fraction) -> int:
    """ffmpeg's shift of a file's timestamps to 0 (its start in microseconds,
    rescaled to the stream's time base, rounded to nearest)."""
    start_us = int(round(info.start_time * 1_000_000))
    value = Fraction(start_us, 1_000_000) / time_base
    return int(value + Fraction(1, 2)) if value >= 0 else -int(-value + Fraction(1, 2))


class GpuChunk(FrameChunk):
    """Converted frames in device memory; their slot is given back when taken."""
    holds_source_buffer = True

    def __init__(self, frames, slots: threading.Semaphore):
        self._frames, self._slots = frames, slots
        self.frames = int(frames.shape[0])

    def take(self) -> np.ndarray:
        out = self._frames.cpu().numpy()
        self.drop()
        return out

    def drop(self) -> None:
        if self._frames is not None:
            self._frames = None
            self._slots.release()

    def detach(self) -> FrameChunk:
        return MemoryChunk(self.take())


class _Cancelled(Exception):
    pass


@dataclass
class _Session:
    number: int
    tasks: "queue.Queue"
    slots: threading.Semaphore
    busy_with: Optional[int] = None
    cancel: Optional[int] = None
    thread: Optional[threading.Thread] = None


class NvdecFrameSource:
    """``sessions`` decoder threads on GPU ``gpu`` (the FrameSource interface;
    frames/mixed_source.py puts it beside the ffmpeg decoders)."""

    def __init__(self, sessions: int = SESSIONS, gpu: int = 0):
        self._nvc = load_library()
        import torch
        self._torch = torch
        self.gpu = gpu
        self.device = torch.device("cuda", gpu)
        self._out: "queue.Queue" = queue.Queue()
        self._converters: Dict[tuple, object] = {}
        self._lock = threading.Lock()
        self._sessions: List[_Session] = []
        for i in range(sessions):
            s = _Session(i, queue.Queue(), threading.Semaphore(CHUNKS_AHEAD))
            s.thread = threading.Thread(target=self._loop, args=(s,), name=f"nvdec-{i}", daemon=True)
            s.thread.start()
            self._sessions.append(s)

    # -- FrameSource ----------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return len(self._sessions)

    def plan(self, path, split: bool):
        return plan_video(path)

    def cost(self, info: VideoInfo, frames: Optional[int]) -> float:
        # About 7x an ffmpeg process on 1080p (bench/RESULTS.md): only the order matters.
        return decode_seconds(info, frames) / 7

    def idle(self, limit: int) -> int:
        busy = sum(1 for s in self._sessions if s.busy_with is not None)
        return max(0, min(limit, len(self._sessions)) - busy)

    def submit(self, task: DecodeTask) -> None:
        session = next(s for s in self._sessions if s.busy_with is None)
        session.busy_with, session.cancel = task.task_id, None
        session.tasks.put(task)

    def cancel(self, task_id: int) -> None:
        for s in self._sessions:
            if s.busy_with == task_id:
                s.cancel = task_id

    def poll(self, timeout: float) -> list:
        out = []
        try:
            out.append(self._out.get(timeout=timeout) if timeout > 0 else self._out.get_nowait())
            while True:
                out.append(self._out.get_nowait())
        except queue.Empty:
            pass
        for message in out:
            if isinstance(message, (TaskDone, TaskFailed)):
                for s in self._sessions:
                    if s.busy_with == message.task_id:
                        s.busy_with = None
        return out

    def close(self) -> None:
        for s in self._sessions:
            s.cancel = s.busy_with
            s.tasks.put(None)
        for s in self._sessions:
            s.thread.join(timeout=10)
        self._sessions = []

    # -- the decoder threads ------------------------------------------------------------------
    def _loop(self, session: _Session) -> None:
        while True:
            task = session.tasks.get()
            if task is None:
                return
            try:
                report = self._decode(session, task)
                self._out.put(TaskDone(task.task_id, report))
            except _Cancelled:
                self._out.put(TaskFailed(task.task_id, "cancelled", cancelled=True))
            except Exception as exc:  # anything NVDEC could not do: the CPU redoes the video
                cause = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
                self._out.put(TaskFailed(task.task_id, f"NVDEC failed ({cause})", fallback=True))

    def _converter(self, info: VideoInfo):
        from shots.frames.yuv_to_rgb import YuvToRgb
        plan = scale_plan(info.width, info.height, info.pix_fmt, info.color_space, _full_range(info))
        key = id(plan)
        with self._lock:
            if key not in self._converters:
                self._converters[key] = YuvToRgb(plan, self.device)
            return self._converters[key]

    def _task_run(self, session: _Session, task: DecodeTask, time_base: Fraction, offset: int) -> "_TaskRun":
        return _TaskRun(self, session, task, time_base, offset)

    def _decode(self, session: _Session, task: DecodeTask) -> DecodeReport:
        info, seg = task.info, task.segment
        why = refusal(info)
        if why:
            raise NotExact(why)
        nvc, torch = self._nvc, self._torch
        torch.cuda.set_device(self.device)
        demuxer = nvc.CreateDemuxer(filename=str(info.path))
        if demuxer.GetVideoStreamId() != info.stream_index:
            raise NotExact(f"it would decode stream {demuxer.GetVideoStreamId()}, not {info.stream_index}")
        decoder = nvc.CreateDecoder(gpuid=self.gpu, codec=demuxer.GetNvCodecId(), usedevicememory=True)
        time_base = Fraction(demuxer.GetTimebaseNum(), demuxer.GetTimebaseDen())
        absolute = seg.frames is not None  # a segment: ffmpeg keeps the file's timestamps (-copyts)
        offset = 0 if absolute else start_offset(info, time_base)
        # Its own stream: copies and conversions wait neither for the model's
        # batches nor for the other sessions (the legacy default stream would
        # serialise them all: 1.2k 1080p frames/s with 8 sessions, measured).
        with torch.cuda.stream(torch.cuda.Stream(self.device)):
            run = self._task_run(session, task, time_base, offset)
            started = seg.start is None
            for packet in demuxer:
                if session.cancel == task.task_id:
                    raise _Cancelled()
                if not started:
                    # A segment starts at its keyframe: skip the packets before it.
                    if not packet.key or float(packet.pts * time_base) < seg.start - 1e-4:
                        continue
                    started = True
                for frame in decoder.Decode(packet):
                    if not run.add(frame):
                        break
                if run.full:
                    break
            run.flush()
        return DecodeReport(run.count, run.timestamps, 0, [], decoder="nvdec")


class _TaskRun:  # noqa: E302 (NvdecFrameSource._task_run makes it)
    """One task's frames: surfaces into a batch, batches converted and sent."""

    def __init__(self, source: NvdecFrameSource, session: _Session, task: DecodeTask, time_base: Fraction,
                 offset: int):
        info = task.info
        self.source, self.session, self.task = source, session, task
        self.convert = source._converter(info)
        self.shift, _ = PIX_FMTS[info.pix_fmt]
        self.height, self.width = info.height, info.width
        dtype = source._torch.uint8 if self.shift == 0 else source._torch.int16
        self.batch = source._torch.empty((BATCH_FRAMES, info.height * 3 // 2, info.width), dtype=dtype,
                                         device=source.device)
        self.filled = 0
        self.count = 0
        self.timestamps: List[float] = []
        self.time_base, self.offset = time_base, offset
        self.start = task.segment.start
        self.limit = task.segment.frames

    @property
    def full(self) -> bool:
        return self.limit is not None and self.count + self.filled >= self.limit

    def add(self, frame) -> bool:
        """One decoded frame; False once the segment has all its frames."""
        if self.full:
            return False
        pts = frame.getPTS()
        if self.start is not None and float(pts * self.time_base) < self.start - 1e-4:
            return True  # decoded before the segment's first frame (ffmpeg's -ss drops it too)
        surface = self.source._torch.from_dlpack(frame)
        if tuple(surface.shape) != tuple(self.batch.shape[1:]):
            raise NotExact(f"surface {tuple(surface.shape)} for a {self.width}x{self.height} video")
        self.batch[self.filled].copy_(surface.view(self.batch.dtype))
        # The decoder reuses its surfaces: the copy must be done before the next Decode call.
        self.source._torch.cuda.current_stream().synchronize()
        self.filled += 1
        self.timestamps.append(ffmpeg_time(pts, self.offset, self.time_base))
        if self.filled == BATCH_FRAMES:
            self.flush()
        return True

    def flush(self) -> None:
        if not self.filled:
            return
        from shots.frames.yuv_to_rgb import split_semiplanar
        planes = self.batch[:self.filled]
        if self.shift:
            planes = planes.to(self.source._torch.int32) & 0xFFFF  # P016's samples, unsigned
        y, u, v = split_semiplanar(planes, self.height, self.shift)
        rgb = self.convert(y, u, v)
        self.source._torch.cuda.current_stream().synchronize()  # complete before another stream reads it
        n, self.filled = self.filled, 0
        self.count += n
        while not self.session.slots.acquire(timeout=0.1):
            if self.session.cancel == self.task.task_id:
                raise _Cancelled()
        self.source._out.put(FramesReady(self.task.task_id, GpuChunk(rgb, self.session.slots)))
