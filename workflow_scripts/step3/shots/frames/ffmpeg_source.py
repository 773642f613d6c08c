"""The first frame source: ffmpeg in spawned decoder processes, each with a
ring of shared memory.

Each decoder is a *spawned* process (never forked: a fork of a process that
has initialised CUDA cannot use it, and a decoder must not touch the GPU
anyway). It runs one task at a time (see ffmpeg_process.py); the model's
process only copies 3.9 kB per frame out of its ring.
"""
import multiprocessing as mp
import os
import time
from dataclasses import replace
from multiprocessing import shared_memory
from multiprocessing.connection import wait
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from shots.frames.ffmpeg_process import CHUNK_FRAMES, FRAME_SHAPE, RingChunkWritten, decoder_main
from shots.frames.ffmpeg_reader import FRAME_BYTES
from shots.frames.messages import (DecodeTask, FrameChunk, FramesReady, MemoryChunk, SegmentPlan, TaskDone,
                                   TaskFailed)
from shots.frames.probe import VideoInfo
from shots.frames.segments import decode_seconds, default_decoder_threads, plan_video
from shots.frames.source import FrameSource

RING_FRAMES = 4096  # frames each decoder can run ahead (16 MB of shared memory)
LIVENESS_S = 0.5    # every decoder process is asked whether it lives this often (its pipe tells sooner)
EXIT_GRACE_S = 5.0  # a decoder whose pipe ended is killed if it has not exited after this long


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def decoder_processes(requested, model_device: str) -> int:
    """How many decoders: the number asked for, or for "auto" 1 beside a CPU
    model (the model is the bottleneck and needs the cores) and one per core
    but one beside a GPU model (the model waits for the decoders, and one
    thread per process decodes more frames per core than threads do: see
    bench/RESULTS.md, decoder threads)."""
    if requested != "auto":
        return int(requested)
    if model_device == "cpu":
        return 1
    return max(1, min(32, cpu_count() - 1))


class Decoder:
    """The model's process's handle on one decoder process and its ring."""

    def __init__(self, ctx, number: int, slots: int):
        self.number = number
        self.slots = slots
        self.shm = shared_memory.SharedMemory(create=True, size=slots * CHUNK_FRAMES * FRAME_BYTES)
        self.ring = np.ndarray((slots, CHUNK_FRAMES) + FRAME_SHAPE, dtype=np.uint8, buffer=self.shm.buf)
        self.tasks = ctx.Queue()
        self.free = ctx.Semaphore(slots)
        self.cancel = ctx.Value("q", -1, lock=False)
        self.conn, child_conn = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=decoder_main, name=f"step3-decoder-{number}",
                                   args=(self.shm.name, slots, self.tasks, child_conn, self.free, self.cancel),
                                   daemon=True)
        self.process.start()
        child_conn.close()
        self.busy_with: Optional[int] = None  # task id
        self.unread = 0  # chunks in the ring not yet taken
        self.exited_at: Optional[float] = None  # when its pipe ended (or it was found dead)

    @property
    def exited(self) -> bool:
        return self.exited_at is not None

    @property
    def assignable(self) -> bool:
        # A ring holds one task's chunks at a time: slots are reused in order.
        # Whether the process lives is known from its pipe (end of file when it
        # dies), not asked here: this is read for every decoder on every turn.
        return self.busy_with is None and self.unread == 0 and not self.exited

    def take(self, slot: int, frames: int) -> np.ndarray:
        """Copy a chunk out of the ring and hand its slot back to the decoder."""
        out = self.ring[slot, :frames].copy()
        self.unread -= 1
        self.free.release()
        return out

    def drop(self) -> None:
        """Hand a slot back unread (its task was superseded)."""
        self.unread -= 1
        self.free.release()

    def ask_to_stop(self) -> None:
        try:
            self.tasks.put(None)
        except (OSError, ValueError):
            pass

    def close(self, timeout: float = 5.0) -> None:
        if self.process.is_alive():
            self.ask_to_stop()
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout)
        self.tasks.close()
        self.conn.close()
        del self.ring
        self.shm.close()
        try:
            self.shm.unlink()
        except FileNotFoundError:
            pass


class RingChunk(FrameChunk):
    holds_source_buffer = True

    def __init__(self, decoder: Decoder, slot: int, frames: int):
        self._decoder, self._slot, self.frames = decoder, slot, frames

    def take(self) -> np.ndarray:
        return self._decoder.take(self._slot, self.frames)

    def drop(self) -> None:
        self._decoder.drop()

    def detach(self) -> FrameChunk:
        return MemoryChunk(self.take())


class FfmpegFrameSource(FrameSource):
    """``decoders`` spawned decoder processes, each with a ring of ``ring_frames``."""

    def __init__(self, decoders: int, ring_frames: int = RING_FRAMES, decoder_threads: Optional[int] = None,
                 segment_seconds: Optional[float] = 1.0, segment_frames: Optional[int] = None):
        self._ctx = mp.get_context("spawn")
        self._slots = max(2, ring_frames // CHUNK_FRAMES)
        self._threads = decoder_threads
        self._segment_seconds, self._segment_frames = segment_seconds, segment_frames
        self._decoders: List[Decoder] = []
        self._retired: List[Decoder] = []
        try:
            for i in range(decoders):
                self._decoders.append(Decoder(self._ctx, i, self._slots))
        except BaseException:
            self.close()
            raise
        self._by_conn = {d.conn: d for d in self._decoders}
        self._checked = time.monotonic()
        self._late: list = []  # messages of a decoder replaced outside poll(), for the next poll

    @property
    def capacity(self) -> int:
        return len(self._decoders)

    def plan(self, path: Path, split: bool) -> Tuple[VideoInfo, List[SegmentPlan]]:
        if not split:
            return plan_video(path)
        return plan_video(path, self._segment_seconds, self._segment_frames)

    def cost(self, info: VideoInfo, frames: Optional[int]) -> float:
        return decode_seconds(info, frames)

    def idle(self, limit: int) -> int:
        busy = sum(1 for d in self._decoders if d.busy_with is not None)
        return max(0, min(limit - busy, sum(1 for d in self._decoders if d.assignable)))

    def submit(self, task: DecodeTask) -> None:
        decoder = self._live_assignable()
        threads = task.threads or self._threads or default_decoder_threads(task.info, len(self._decoders))
        decoder.busy_with = task.task_id
        decoder.tasks.put(replace(task, threads=threads))

    def _live_assignable(self) -> Decoder:
        """A free decoder whose process lives (asked here, once a task: one
        that died idle, its pipe not read yet, would fail the video); one
        found dead is replaced on the spot, so what idle() said holds."""
        i, d = next((i, d) for i, d in enumerate(self._decoders) if d.assignable)
        if d.process.is_alive():
            return d
        self._late += self._replace(i, d)
        return self._decoders[i]

    def cancel(self, task_id: int) -> None:
        for d in self._decoders:
            if d.busy_with == task_id:
                d.cancel.value = task_id

    def poll(self, timeout: float) -> list:
        out = []
        for conn in wait(list(self._by_conn), timeout):
            decoder = self._by_conn.get(conn)
            if decoder is not None:
                out += self._receive(decoder, conn)
        return out + self._replace_dead()

    def _receive(self, decoder: Decoder, conn) -> list:
        out = []
        while conn.poll():
            try:
                message = conn.recv()
            except EOFError:  # the process died; _replace_dead says so
                del self._by_conn[conn]
                decoder.exited_at = time.monotonic()
                break
            if isinstance(message, RingChunkWritten):
                decoder.unread += 1
                out.append(FramesReady(message.task_id, RingChunk(decoder, message.slot, message.frames)))
                continue
            if isinstance(message, (TaskDone, TaskFailed)):
                decoder.busy_with = None
            out.append(message)
        return out

    def _replace_dead(self) -> list:
        """A new decoder for each one that died; its task fails. The processes
        are asked only for those whose pipe ended, and all of them every
        LIVENESS_S: asking 15 of them twice a turn, on every turn, was where
        the main thread was in 21-29 % of its samples (H200 NVDEC trace,
        bench/RESULTS.md), Python time beside eight NVDEC threads and the
        model's, which need the same interpreter lock."""
        now = time.monotonic()
        every = now - self._checked >= LIVENESS_S
        if every:
            self._checked = now
        failed, self._late = self._late, []
        for i, d in enumerate(self._decoders):
            if not (d.exited or every):
                continue
            if d.process.is_alive():
                if not d.exited or now - d.exited_at < EXIT_GRACE_S:
                    continue
                d.process.kill()  # its pipe ended long ago, yet it lingers: it will not work again
            failed += self._replace(i, d)
        return failed

    def _replace(self, i: int, d: Decoder) -> list:
        """A fresh decoder in place of dead ``d``; what ``d`` said before dying,
        and the failure of its task, if it had one."""
        d.process.join(1)
        failed = self._receive(d, d.conn) if d.conn in self._by_conn else []  # its last words still count
        if d.busy_with is not None:
            failed.append(TaskFailed(d.busy_with, f"decoder process died (exit code {d.process.exitcode})"))
        self._by_conn.pop(d.conn, None)
        # Its ring may still hold chunks a video will read: keep it mapped.
        self._retired.append(d)
        fresh = Decoder(self._ctx, d.number, self._slots)
        self._decoders[i] = fresh
        self._by_conn[fresh.conn] = fresh
        return failed

    def close(self, timeout: float = 5.0) -> None:
        # All at once: a process takes a while to exit (0.1-0.5 s measured),
        # and 15 decoders stopped one after the other kept a run 8 s longer.
        decoders = self._decoders + self._retired
        for d in decoders:
            d.ask_to_stop()
        deadline = time.monotonic() + timeout
        for d in decoders:
            d.process.join(max(0.0, deadline - time.monotonic()))
        for d in decoders:
            d.close(timeout=1.0)
        self._decoders = []
        self._retired = []
