"""A frame source on the GPU's video decoders (NVDEC, through PyNvVideoCodec).

Decoder sessions live in the model's process (the only process that touches
the GPU). Each runs one task at a time with PyNvVideoCodec's ThreadedDecoder,
which demuxes and decodes in a C++ thread of its own; the session's Python
thread takes the decoded NV12/P016 surfaces 32 at a time, stacks them into a
batch in device memory with one copy, and converts the batch in one pass to
the 48x27 RGB frames ffmpeg's default scaler makes (swscale_exact.py,
yuv_to_rgb.py: identical bytes). Timestamps are computed as STEP3's ffmpeg
command prints them, so results are the same files.

Measured on the H200 (16 cores, 8 sessions, 1080p H.264; bench/RESULTS.md):
a bare PyNvVideoCodec decode loop reaches 4,680 frames/s. The first version
(a Python Decode call per packet, a copy and a stream synchronisation per
frame, the conversion in passes of 8 frames) reached 1,840: eight Python
threads handing the GIL back and forth several times a frame. This one:
4,500 frames/s, the conversion included.

Anything it cannot do ends the task with ``TaskFailed(fallback=True)``: the
executor decodes that video again with ffmpeg on the CPU.
"""
import queue
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Dict, List, Optional


from shots.frames.messages import (DecodeReport, DecodeTask, FrameChunk, FramesReady, MemoryChunk, TaskDone,
                                   TaskFailed)
from shots.frames.ffmpeg_reader import check_coverage
from shots.frames.probe import DecodeError, VideoInfo
from shots.frames.segments import plan_video
from shots.frames.swscale_exact import NotExact, scale_plan

SESSIONS = 8           # 7 NVDEC engines on an H100/H200; 8 sessions reach the bare loop's 4.5k 1080p frames/s
BATCH_FRAMES = 32      # surfaces converted at once (a 1080p batch: 100 MB, 400 MB while converted)
CHUNKS_AHEAD = 64      # converted batches a thread may hold unread (48x27 frames: 8 MB)
STALL_S = 60.0         # a session that gives nothing for this long (not waiting on us) is given up
# Codecs handed to NVDEC (ffprobe's names); 4:2:0 8- and 10-bit only.
CODECS = {"h264", "hevc", "vp9", "av1", "vp8", "mpeg2video", "mpeg1video"}
PIX_FMTS = {"yuv420p": (0, "yuv420p"), "yuvj420p": (0, "yuvj420p"), "yuv420p10le": (6, "yuv420p10le")}


# A session's time per frame: a fixed part (the Python side, the
# conversion's kernels) and a part per pixel (H200, 8 sessions: 1080p
# ~560 frames/s a session, 160x90 ~1,600).
FRAME_COST_S = 6e-4
PIXEL_COST_S = 5.8e-10


def nvdec_seconds(info: VideoInfo, frames: Optional[int]) -> float:
    """Rough time one NVDEC session needs for ``frames`` frames (None: all) of a video."""
    n = frames if frames is not None else (info.expected_frames or 0)
    return n * (FRAME_COST_S + PIXEL_COST_S * info.width * info.height)


class CodecUnsupported(NotExact):
    """The card's NVDEC does not decode this codec/format at all: not worth
    trying on another video of the run."""


class SeekFailed(NotExact):
    """ThreadedDecoder's seek by frame index did not land on the segment's
    first frame (its seek is by nominal frame rate): the video goes to the CPU
    rather than being decoded from its start again for every segment."""


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
    """Converted frames in device memory; their slot is given back when
    taken. They stay there: windows and the model's batches are made on the
    GPU (windows.py)."""
    holds_source_buffer = True

    def __init__(self, frames, slots: threading.Semaphore):
        self._frames, self._slots = frames, slots
        self.frames = int(frames.shape[0])

    def take(self):
        out = self._frames
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
    progress: float = 0.0      # monotonic time of its task's last step
    lost: bool = False         # stalled inside the library: never given work again
    # Where its time went (seconds) and frames decoded but dropped before a
    # segment's start: written by its own thread only, summed by totals().
    times: Dict[str, float] = field(default_factory=dict)


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
        """Sessions that can still take work (a stalled one never can)."""
        return sum(1 for s in self._sessions if not s.lost)

    def plan(self, path, split: bool):
        return plan_video(path)

    def totals(self) -> Dict[str, float]:
        """The sessions' time by step (open, wait, copy, convert, scheduler,
        end; seconds summed over sessions) and frames (sent, skipped)."""
        out: Dict[str, float] = {}
        for s in self._sessions:
            for key, value in list(s.times.items()):
                out[key] = out.get(key, 0.0) + value
        return out

    def cost(self, info: VideoInfo, frames: Optional[int]) -> float:
        return nvdec_seconds(info, frames)

    def idle(self, limit: int) -> int:
        usable = [s for s in self._sessions if not s.lost]
        busy = sum(1 for s in usable if s.busy_with is not None)
        return max(0, min(limit, len(usable)) - busy)

    def submit(self, task: DecodeTask) -> None:
        session = next((s for s in self._sessions if s.busy_with is None and not s.lost), None)
        assert session is not None, "submit() without an idle session"
        session.busy_with, session.cancel, session.progress = task.task_id, None, time.monotonic()
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
        return out + self._stalled()

    def _stalled(self) -> list:
        """A session stuck in the library (no batch for STALL_S) gives its
        task up to the CPU and is not used again: a batch never hangs on it."""
        now, out = time.monotonic(), []
        for s in self._sessions:
            if s.busy_with is not None and not s.lost and now - s.progress > STALL_S:
                s.lost, s.cancel = True, s.busy_with
                out.append(TaskFailed(s.busy_with, f"NVDEC stalled: no frame for {STALL_S:.0f} s", fallback=True))
                s.busy_with = None
        return out

    def close(self) -> None:
        for s in self._sessions:
            s.cancel = s.busy_with
            s.tasks.put(None)
        for s in self._sessions:
            if not s.lost:  # a stalled one is stuck in the library: a daemon thread, left behind
                s.thread.join(timeout=10)
        self._sessions = []

    # -- the decoder threads ------------------------------------------------------------------
    def _loop(self, session: _Session) -> None:
        # One stream per session, for its life: a new pooled stream per task
        # would sooner or later be the model's or another session's (PyTorch
        # hands out 32 in turn), and each would keep a cache of its own.
        self._torch.cuda.set_device(self.device)
        stream = self._torch.cuda.Stream(self.device)
        while True:
            task = session.tasks.get()
            if task is None:
                return
            try:
                report = self._decode(session, task, stream)
                self._out.put(TaskDone(task.task_id, report))
            except _Cancelled:
                self._out.put(TaskFailed(task.task_id, "cancelled", cancelled=True))
            except Exception as exc:  # anything NVDEC could not do: the CPU redoes the video
                cause = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
                self._out.put(TaskFailed(task.task_id, f"NVDEC failed ({cause})", fallback=True,
                                         codec_unsupported=isinstance(exc, CodecUnsupported)))

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

    def _decode(self, session: _Session, task: DecodeTask, stream) -> DecodeReport:
        info, seg = task.info, task.segment
        why = refusal(info)
        if why:
            raise NotExact(why)
        nvc, torch = self._nvc, self._torch
        demuxer = nvc.CreateDemuxer(filename=str(info.path))  # the stream and its time base only
        if demuxer.GetVideoStreamId() != info.stream_index:
            raise NotExact(f"it would decode stream {demuxer.GetVideoStreamId()}, not {info.stream_index}")
        time_base = Fraction(demuxer.GetTimebaseNum(), demuxer.GetTimebaseDen())
        self._check_caps(demuxer, info)
        del demuxer
        absolute = seg.frames is not None  # a segment: ffmpeg keeps the file's timestamps (-copyts)
        offset = 0 if absolute else start_offset(info, time_base)
        # The session's own stream, handed to the decoder too: its copies and
        # ours are ordered on it, and wait neither for the model's batches nor
        # for the other sessions (on the legacy default stream: 1.2k 1080p frames/s).
        with torch.cuda.stream(stream):
            run = self._task_run(session, task, time_base, offset)
            if not self._seek_worked(run, stream, seg.first if seg.start is not None else 0):
                raise SeekFailed(f"its seek to frame {seg.first} did not land on the segment's first frame")
            run.flush()
        self._check_complete(run, task)
        return DecodeReport(run.count, run.timestamps, 0, [], decoder="nvdec")

    @staticmethod
    def _check_complete(run: "_TaskRun", task: DecodeTask) -> None:
        """A ThreadedDecoder that fails in its own thread just ends early:
        such a task goes to the CPU, which says what the file really holds."""
        seg = task.segment
        if seg.frames is not None and run.count != seg.frames:
            raise RuntimeError(f"NVDEC gave {run.count} frames instead of {seg.frames}")
        if seg.frames is None:
            if not run.count and task.info.expected_frames:
                raise RuntimeError("NVDEC gave no frame")
            try:
                check_coverage(task.info, run.timestamps)
            except DecodeError as exc:
                raise RuntimeError(f"NVDEC stopped early ({exc})") from None

    def _check_caps(self, demuxer, info: VideoInfo) -> None:
        """What the card's NVDEC says it decodes (AV1 on an H200: nothing),
        before a decoder thread is started on it."""
        try:
            caps = self._nvc.GetDecoderCaps(gpuid=self.gpu, codec=demuxer.GetNvCodecId(),
                                            chromaformat=demuxer.ChromaFormat(), bitdepth=demuxer.BitDepth())
        except Exception as exc:
            raise CodecUnsupported(f"NVDEC cannot decode {info.codec} here ({type(exc).__name__}: {exc})") from None

        def cap(key: str, default: int) -> int:
            try:  # a dict in 2.2.4; anything else is read as "not said"
                return int(caps[key]) if key in caps else default
            except Exception:
                return default

        if not cap("num_decoder_engines", 1):
            raise CodecUnsupported(f"this GPU's NVDEC does not decode {info.codec} "
                                   f"({info.pix_fmt}, {demuxer.BitDepth()} bits)")
        if info.width > cap("width_max", info.width) or info.height > cap("height_max", info.height):
            raise NotExact(f"{info.width}x{info.height} is above this GPU's NVDEC limit for {info.codec}")

    @staticmethod
    def _seek_worked(run: "_TaskRun", stream, first: int) -> bool:
        """Decode a task from its first frame's index; False when the decoder
        could not seek there (an error before any frame was sent, no frame,
        or a first frame after the segment's start)."""
        try:
            return run.decode(stream, first)
        except _Cancelled:
            raise
        except Exception:
            if run.count or run.filled or not first:
                raise
            return False


class _TaskRun:  # noqa: E302 (NvdecFrameSource._task_run makes it)
    """One task's frames: decoded batches stacked, converted and sent."""

    def __init__(self, source: NvdecFrameSource, session: _Session, task: DecodeTask, time_base: Fraction,
                 offset: int):
        info = task.info
        torch = source._torch
        self.source, self.session, self.task, self.torch = source, session, task, torch
        self.convert = source._converter(info)
        self.shift, _ = PIX_FMTS[info.pix_fmt]
        self.height, self.width = info.height, info.width
        dtype = torch.uint8 if self.shift == 0 else torch.int16
        self.batch = torch.empty((BATCH_FRAMES, info.height * 3 // 2, info.width), dtype=dtype, device=source.device)
        self.filled = 0
        self.count = 0
        self.timestamps: List[float] = []
        self.time_base, self.offset = time_base, offset
        self.start = task.segment.start
        self.limit = task.segment.frames

    @property
    def full(self) -> bool:
        return self.limit is not None and self.count + self.filled >= self.limit

    def decode(self, stream, start_frame: int) -> bool:
        """Decode the task from ``start_frame`` (a seek by frame index); False,
        with nothing sent, when the seek missed: the first frame came after
        the segment's start, or no frame came at all."""
        t = time.perf_counter()
        decoder = self.source._nvc.ThreadedDecoder(str(self.task.info.path), buffer_size=2 * BATCH_FRAMES,
                                                   gpu_id=self.source.gpu, cuda_stream=stream.cuda_stream,
                                                   use_device_memory=True, start_frame=start_frame)
        t = self.timed("open", t)
        try:
            while not self.full:
                if self.session.cancel == self.task.task_id:
                    raise _Cancelled()
                frames = decoder.get_batch_frames(BATCH_FRAMES)
                self.session.progress = time.monotonic()
                t = self.timed("wait", t)
                if not frames:
                    # Nothing at all after a seek: it went past the file's end by its reckoning.
                    return bool(self.count or self.filled or not start_frame)
                if not self.add(frames):
                    return False
                t = time.perf_counter()
        finally:
            decoder.end()
            self.timed("end", t)
        return True

    def timed(self, step: str, since: float, frames: int = 0) -> float:
        """Adds the time since ``since`` (or a frame count) to the session's ``step``; returns now."""
        now = time.perf_counter()
        times = self.session.times
        times[step] = times.get(step, 0.0) + (frames if frames else now - since)
        return now

    def add(self, frames) -> bool:
        """Decoded frames (valid until the decoder's next batch): their
        timestamps, then one copy into the batch (done before returning)."""
        pts = [f.getPTS() for f in frames]
        times = [ffmpeg_time(p, self.offset, self.time_base) for p in pts]
        skip = 0
        if self.start is not None and not self.count and not self.filled:
            seconds = [float(p * self.time_base) for p in pts]
            if seconds[0] > self.start + 1e-4:
                return False
            # Decoded before the segment's first frame (ffmpeg's -ss drops them too).
            while skip < len(seconds) and seconds[skip] < self.start - 1e-4:
                skip += 1
            if skip:
                self.timed("skipped frames", 0.0, skip)
        take = len(frames) - skip
        if self.limit is not None:
            take = min(take, self.limit - self.count - self.filled)
        while take > 0:
            n = min(take, BATCH_FRAMES - self.filled)
            t = time.perf_counter()
            surfaces = [self.torch.from_dlpack(f) for f in frames[skip:skip + n]]
            shape = tuple(surfaces[0].shape)
            if shape != tuple(self.batch.shape[1:]):
                raise NotExact(f"surface {shape} for a {self.width}x{self.height} video")
            self.torch.stack([s.view(self.batch.dtype) for s in surfaces], out=self.batch[self.filled:self.filled + n])
            self.torch.cuda.current_stream().synchronize()  # the decoder reuses the surfaces after this batch
            self.timed("copy", t)
            self.timestamps += times[skip:skip + n]
            self.filled += n
            skip += n
            take -= n
            if self.filled == BATCH_FRAMES:
                self.flush()
        return True

    def flush(self) -> None:
        if not self.filled:
            return
        t = time.perf_counter()
        from shots.frames.yuv_to_rgb import split_semiplanar
        planes = self.batch[:self.filled]
        if self.shift:
            planes = planes.to(self.torch.int32) & 0xFFFF  # P016's samples, unsigned
        y, u, v = split_semiplanar(planes, self.height, self.shift)
        rgb = self.convert(y, u, v)
        self.torch.cuda.current_stream().synchronize()  # complete before another stream reads it
        n, self.filled = self.filled, 0
        self.count += n
        t = self.timed("convert", t)
        while not self.session.slots.acquire(timeout=0.1):
            self.session.progress = time.monotonic()  # waiting for the scheduler is no stall
            if self.session.cancel == self.task.task_id:
                raise _Cancelled()
        self.timed("scheduler", t)
        self.timed("frames", 0.0, n)
        self.source._out.put(FramesReady(self.task.task_id, GpuChunk(rgb, self.session.slots)))
