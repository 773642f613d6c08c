"""A frame source on the GPU's video decoders (NVDEC, through PyNvVideoCodec).

Decoder sessions live in the model's process (the only process that touches
the GPU). Each runs one task at a time with PyNvVideoCodec's ThreadedDecoder,
which demuxes and decodes in a C++ thread of its own; the session's Python
thread takes the decoded NV12/P016 surfaces 32 at a time, stacks them into a
batch in device memory with one copy, and converts the batch in one pass to
the 48x27 RGB frames ffmpeg's default scaler makes (swscale_exact.py,
yuv_to_rgb.py: identical bytes). Timestamps are computed as STEP3's ffmpeg
command prints them, from the video's packets (nvdec_task.shown_pts: NVDEC's
own must match them, except for VP9 and AV1, whose frames take them), so
results are the same files.

Measured on the H200 (16 cores, 8 sessions, 1080p H.264; bench/RESULTS.md):
a bare PyNvVideoCodec decode loop reaches 4,680 frames/s. The first version
(a Python Decode call per packet, a copy and a stream synchronisation per
frame, the conversion in passes of 8 frames) reached 1,840: eight Python
threads handing the GIL back and forth several times a frame. This one:
4,500 frames/s, the conversion included.

It never seeks. ThreadedDecoder's seek by frame index (``start_frame``)
crashed the whole process (a segmentation fault in ``get_batch_frames``) on
the project's own sample, a 160x90 H.264 MP4 with audio, cut into segments
of 1,000 frames (H200, PyNvVideoCodec 2.2.4), while it worked on full-HD
re-encodes: a crash cannot be caught, so no file gets a seek. A session
decodes a video from its first frame and keeps its decoder open at the end
of a segment: the video's next segment, if it comes to this session,
continues where the last one stopped (frames/mixed_source.py sends it there,
and lets the ffmpeg decoders take segments from the video's end).

Anything it cannot do ends the task with ``TaskFailed(fallback=True)``: the
executor decodes that video again with ffmpeg on the CPU.
"""
import queue
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Dict, List, Optional, Tuple

from shots.frames.messages import DecodeReport, DecodeTask, TaskDone, TaskFailed
from shots.frames.ffmpeg_reader import check_coverage
from shots.frames.probe import DecodeError, VideoInfo
from shots.frames.segments import plan_video
from shots.frames.nvdec_task import BATCH_FRAMES, ONE_FRAME_PER_PACKET, PIX_FMTS, Cancelled, TaskRun, shown_pts
from shots.frames.swscale_exact import NotExact, scale_plan

SESSIONS = 8           # 7 NVDEC engines on an H100/H200; 8 sessions reach the bare loop's 4.5k 1080p frames/s
CHUNKS_AHEAD = 64      # converted batches a thread may hold unread (48x27 frames: 8 MB)
STALL_S = 60.0         # a session that gives nothing for this long (not waiting on us) is given up
# Codecs handed to NVDEC (ffprobe's names); 4:2:0 8- and 10-bit only.
CODECS = {"h264", "hevc", "vp9", "av1", "vp8", "mpeg2video", "mpeg1video"}


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


_END_DECODER = "end its decoder"  # a session's queue item: end the open decoder, stay ready
_ENDING = -1                       # busy_with of a session ending its decoder (no task of the run)


def stands_at(position: Optional[Tuple[VideoInfo, int]], info: VideoInfo, first: int) -> bool:
    """Whether a session's decoder stands at frame ``first`` of this plan of
    the video (the same VideoInfo: a video planned again starts anew)."""
    return position is not None and position[0] is info and position[1] == first


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


def check_caps(nvc, gpu: int, demuxer, info: VideoInfo) -> None:
    """What the card's NVDEC says it decodes (AV1 on an H200: nothing),
    before a decoder thread is started on it."""
    try:
        caps = nvc.GetDecoderCaps(gpuid=gpu, codec=demuxer.GetNvCodecId(),
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


def _full_range(info: VideoInfo) -> Optional[bool]:
    return True if info.color_range == "pc" else None


def start_offset(info: VideoInfo, time_base: Fraction) -> int:
    """ffmpeg's shift of a file's timestamps to 0 (its start in microseconds,
    rescaled to the stream's time base, rounded to nearest)."""
    start_us = int(round(info.start_time * 1_000_000))
    value = Fraction(start_us, 1_000_000) / time_base
    return int(value + Fraction(1, 2)) if value >= 0 else -int(-value + Fraction(1, 2))


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
    # Where its time went (seconds) and its frames: written by its own
    # thread only, summed by totals().
    times: Dict[str, float] = field(default_factory=dict)
    # Its open ThreadedDecoder (its own thread's), and where that stands:
    # (the video's plan, its VideoInfo; index of the next frame it gives),
    # set before the task's TaskDone is sent, None while it works or when
    # nothing is open.
    decoder: object = None
    time_base: Optional[Fraction] = None
    position: Optional[Tuple[VideoInfo, int]] = None
    shown: Optional[List[int]] = None  # its video's frames' pts by index (nvdec_task.shown_pts)
    graph: object = None               # its last GraphedConversion (nvdec_graph.py), if any
    graph_failed: bool = False

    def add(self, step: str, amount: float) -> None:
        """Seconds (or frames) to its ``step``, for totals()."""
        self.times[step] = self.times.get(step, 0.0) + amount


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
        end; seconds summed over sessions) and the frames they sent."""
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

    def idle_positions(self) -> Dict[int, Optional[Tuple[VideoInfo, int]]]:
        """Idle sessions that can take work: number -> where its open decoder
        stands, (video's plan, next frame), or None. A task that does not start
        at a video's first frame must go to the session standing at its first frame."""
        return {s.number: s.position for s in self._sessions if s.busy_with is None and not s.lost}

    def submit(self, task: DecodeTask, session: Optional[int] = None) -> None:
        """To ``session``, or to the idle one standing at the task's first
        frame, else to one with nothing open, else to any idle one."""
        idle = self.idle_positions()
        if session is None:
            ranked = sorted(idle, key=lambda n: (not stands_at(idle[n], task.info, task.segment.first),
                                                 idle[n] is not None))
            session = ranked[0] if ranked else None
        if session not in idle:
            raise RuntimeError(f"submit() to NVDEC session {session}, which is not idle")
        chosen = self._sessions[session]
        # Its position stays: its thread reads it to go on from there, then clears it.
        chosen.busy_with, chosen.cancel, chosen.progress = task.task_id, None, time.monotonic()
        chosen.tasks.put(task)

    def end_unneeded(self, needed) -> None:
        """Idle sessions whose open decoder no task will go on with
        (``needed(position)`` is False: the CPU took the next segment, the
        video ended, failed or was planned again) end it: it holds device
        memory and decodes ahead into it."""
        for s in self._sessions:
            if s.busy_with is None and not s.lost and s.position is not None and not needed(s.position):
                # Its thread is idle: ours to clear. Busy until its thread has
                # ended the decoder: an end() that hangs in the library is a
                # stalled session, not a fault of the next video given to it.
                s.position, s.busy_with, s.progress = None, _ENDING, time.monotonic()
                s.tasks.put(_END_DECODER)

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
                if s.busy_with != _ENDING:  # ending a decoder: no video waits on it
                    out.append(TaskFailed(s.busy_with, f"NVDEC stalled: no frame for {STALL_S:.0f} s",
                                          fallback=True))
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
                self._end_decoder(session)
                return
            if task is _END_DECODER:
                self._end_decoder(session)
                if session.busy_with == _ENDING:
                    session.busy_with = None
                continue
            try:
                report = self._decode(session, task, stream)
                self._out.put(TaskDone(task.task_id, report))
            except Cancelled:
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

    def _task_run(self, session: _Session, task: DecodeTask, time_base: Fraction, offset: int) -> "TaskRun":
        return TaskRun(self, session, task, time_base, offset, session.shown)

    def _decode(self, session: _Session, task: DecodeTask, stream) -> DecodeReport:
        info, seg = task.info, task.segment
        why = refusal(info)
        if why:  # (before anything else: a refused video's plan never had a decoder here)
            raise NotExact(why)
        if session.decoder is None or not stands_at(session.position, info, seg.first):
            self._end_decoder(session)
            if seg.first:
                raise NotExact(f"NVDEC does not seek, and this session's decoder does not stand at frame "
                               f"{seg.first}")
            self._open(session, info, stream)
        session.position = None
        absolute = seg.frames is not None  # a segment: ffmpeg keeps the file's timestamps (-copyts)
        offset = 0 if absolute else start_offset(info, session.time_base)
        try:
            with self._torch.cuda.stream(stream):
                run = self._task_run(session, task, session.time_base, offset)
                run.decode(session.decoder)
                run.flush()
            self._check_complete(run, task, session.shown)
        except BaseException:
            self._end_decoder(session)
            raise
        if seg.frames is None or session.lost:  # (a lost session never gets work again)
            self._end_decoder(session)
        else:  # the video's next segment may continue here
            session.position = (info, seg.first + run.count)
        return DecodeReport(run.count, run.timestamps, 0, [], decoder="nvdec")

    def _open(self, session: _Session, info: VideoInfo, stream) -> None:
        """A decoder from the video's first frame, after the checks a demuxer allows."""
        demuxer = self._nvc.CreateDemuxer(filename=str(info.path))  # the stream and its time base only
        if demuxer.GetVideoStreamId() != info.stream_index:
            raise NotExact(f"it would decode stream {demuxer.GetVideoStreamId()}, not {info.stream_index}")
        session.time_base = Fraction(demuxer.GetTimebaseNum(), demuxer.GetTimebaseDen())
        check_caps(self._nvc, self.gpu, demuxer, info)
        del demuxer
        t = time.perf_counter()
        session.shown = shown_pts(info.path, info.stream_index, info.codec in ONE_FRAME_PER_PACKET)
        session.add("packets", time.perf_counter() - t)
        t = time.perf_counter()
        # The session's own stream, handed to the decoder too: its copies and
        # ours are ordered on it, and wait neither for the model's batches nor
        # for the other sessions (on the legacy default stream: 1.2k 1080p frames/s).
        session.decoder = self._nvc.ThreadedDecoder(str(info.path), buffer_size=2 * BATCH_FRAMES,
                                                    gpu_id=self.gpu, cuda_stream=stream.cuda_stream,
                                                    use_device_memory=True)
        session.add("open", time.perf_counter() - t)

    @staticmethod
    def _end_decoder(session: _Session) -> None:
        decoder, session.decoder, session.position, session.shown = session.decoder, None, None, None
        if decoder is not None:
            t = time.perf_counter()
            try:
                decoder.end()
            except Exception:  # ending is best effort: the task's own outcome is already decided
                pass
            session.add("end", time.perf_counter() - t)

    @staticmethod
    def _check_complete(run: "TaskRun", task: DecodeTask, shown: Optional[List[int]] = None) -> None:
        """A ThreadedDecoder that fails in its own thread just ends early:
        such a task goes to the CPU, which says what the file really holds.
        A whole video's frames must be as many as its packets."""
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
            if shown is not None and run.count != len(shown):
                raise NotExact(f"NVDEC gave {run.count} frames for {len(shown)} packets")
