"""One NVDEC task's frames (nvdec_source.py runs it in a session's thread):
decoded surfaces stacked into a batch in device memory with one copy, the
batch converted in one pass to ffmpeg's 48x27 RGB frames, and the frames
handed over in device memory with the timestamps ffmpeg would print."""
import os
import subprocess
import threading
import time
from fractions import Fraction
from typing import List

from shots.frames.messages import DecodeTask, FrameChunk, FramesReady, MemoryChunk
from shots.frames.nvdec_graph import graphed
from shots.frames.swscale_exact import NotExact

BATCH_FRAMES = 32      # surfaces converted at once (a 1080p batch: 100 MB, 400 MB while converted)
# The 4:2:0 formats NVDEC gives and the exact conversion takes: (bits of P016 padding, name).
PIX_FMTS = {"yuv420p": (0, "yuv420p"), "yuvj420p": (0, "yuvj420p"), "yuv420p10le": (6, "yuv420p10le")}


# The frames ffmpeg shows are the packets' timestamps in order (segments.py
# counts frames by the same rule). Codecs whose every packet shows exactly
# one frame (VP9's superframes, AV1's temporal units: hidden frames travel
# inside the packet of a shown one) show them in the file's order, and take
# their packet's pts: NVDEC's own label is wrong there (on the H200 the shown
# frame of a VP9 superframe got the frame before's pts, 0.40 s where ffmpeg
# says 0.44 s). Elsewhere (reordered B-frames) the order is the pts', and
# NVDEC's labels must be those, or the video goes to ffmpeg.
ONE_FRAME_PER_PACKET = {"vp9", "av1"}


def shown_pts(path, stream_index: int, file_order: bool, timeout: float = 120.0) -> List[int]:
    """The pts of the frames ffmpeg will show, by index: the video's packets'
    (those the demuxer discards left out), in the file's order or sorted."""
    cmd = ["ffprobe", "-v", "error", "-select_streams", str(stream_index), "-show_entries", "packet=pts,flags",
           "-of", "csv=p=0", os.path.abspath(path)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NotExact(f"its packets' timestamps could not be read ({type(exc).__name__})") from None
    pts = []
    for line in out.splitlines():
        value, _, flags = line.strip().partition(",")
        if "D" in flags:
            continue
        try:
            pts.append(int(value))
        except ValueError:
            raise NotExact("a packet without a timestamp (ffmpeg would guess it)") from None
    return pts if file_order else sorted(pts)


def ffmpeg_time(pts: int, offset: int, time_base: Fraction) -> float:
    """A frame's time as showinfo prints it (``%.6g`` of pts times the time base)."""
    return float("%.6g" % ((pts - offset) * (time_base.numerator / time_base.denominator)))


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


class Cancelled(Exception):
    pass


class TaskRun:
    """One task's frames: decoded batches stacked, converted and sent."""

    def __init__(self, source, session, task: DecodeTask, time_base: Fraction,
                 offset: int, shown: List[int]):
        info = task.info
        torch = source._torch
        self.source, self.session, self.task, self.torch = source, session, task, torch
        self.convert = source._converter(info)
        self.shift, _ = PIX_FMTS[info.pix_fmt]
        self.height, self.width = info.height, info.width
        dtype = torch.uint8 if self.shift == 0 else torch.int16
        shape = (BATCH_FRAMES, info.height * 3 // 2, info.width)
        self.graphed = graphed(session, torch, self.convert, shape, dtype, info.height, self.shift, source.device)
        self.batch = self.graphed.input if self.graphed else torch.empty(shape, dtype=dtype, device=source.device)
        self.filled = 0
        self.count = 0
        self.timestamps: List[float] = []
        self.time_base, self.offset = time_base, offset
        self.start = task.segment.start
        self.limit = task.segment.frames
        self.first = task.segment.first  # the video's index of the task's first frame
        self.shown = shown               # every frame's pts by index (shown_pts), or None
        self.relabel = task.info.codec in ONE_FRAME_PER_PACKET

    @property
    def full(self) -> bool:
        return self.limit is not None and self.count + self.filled >= self.limit

    def decode(self, decoder) -> None:
        """The task's frames from ``decoder`` (open at its first frame), never
        one more: what follows stays in the decoder for the next segment."""
        t = time.perf_counter()
        while not self.full:
            if self.session.cancel == self.task.task_id:
                raise Cancelled()
            want = BATCH_FRAMES if self.limit is None else min(BATCH_FRAMES, self.limit - self.count - self.filled)
            frames = decoder.get_batch_frames(want)
            self.session.progress = time.monotonic()
            t = self.timed("wait", t)
            if not frames:  # the video's end (a segment short of its frames fails its check)
                return
            if not self.add(frames):
                raise NotExact(f"NVDEC's frames did not go on at the segment's start ({self.start:.6g} s)")
            t = time.perf_counter()

    def timed(self, step: str, since: float) -> float:
        """Adds the time since ``since`` to the session's ``step``; returns now."""
        now = time.perf_counter()
        self.session.add(step, now - since)
        return now

    def add(self, frames) -> bool:
        """Decoded frames (valid until the decoder's next batch): their
        timestamps, then one copy into the batch (done before returning)."""
        pts = [f.getPTS() for f in frames]
        skip = 0
        if self.start is not None and not self.count and not self.filled:
            # A segment goes on from the last one's end: its first frame is the planned keyframe.
            if abs(float(pts[0] * self.time_base) - self.start) > 1e-4:
                return False
        times = [ffmpeg_time(p, self.offset, self.time_base) for p in self.labels(pts)]
        take = len(frames)
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

    def labels(self, pts: List[int]) -> List[int]:
        """The pts ffmpeg gives these frames (shown_pts): NVDEC's own must be
        those, except where a packet shows one frame, whose pts it takes
        (anything else goes to the CPU, which says what the file holds)."""
        index = self.first + self.count + self.filled
        if index + len(pts) > len(self.shown):
            raise NotExact(f"NVDEC gave more frames than the file has packets ({len(self.shown)})")
        labels = self.shown[index:index + len(pts)]
        if labels != pts:
            if not self.relabel:
                i = next(i for i, (a, b) in enumerate(zip(pts, labels)) if a != b)
                raise NotExact(f"NVDEC's frame {index + i} has pts {pts[i]}, its packet {labels[i]}")
            self.session.add("relabelled", sum(a != b for a, b in zip(pts, labels)))  # (for the trace)
        return labels

    def flush(self) -> None:
        if not self.filled:
            return
        t = time.perf_counter()
        if self.graphed is not None and self.filled == BATCH_FRAMES:
            rgb = self.graphed()
        else:
            from shots.frames.yuv_to_rgb import split_semiplanar
            planes = self.batch[:self.filled]
            if self.shift:
                planes = planes.to(self.torch.int32) & 0xFFFF  # P016's samples, unsigned
            rgb = self.convert(*split_semiplanar(planes, self.height, self.shift))
        self.torch.cuda.current_stream().synchronize()  # complete before another stream reads it
        n, self.filled = self.filled, 0
        self.count += n
        t = self.timed("convert", t)
        while not self.session.slots.acquire(timeout=0.1):
            self.session.progress = time.monotonic()  # waiting for the scheduler is no stall
            if self.session.cancel == self.task.task_id:
                raise Cancelled()
        self.timed("scheduler", t)
        self.session.add("frames", n)
        self.source._out.put(FramesReady(self.task.task_id, GpuChunk(rgb, self.session.slots)))
