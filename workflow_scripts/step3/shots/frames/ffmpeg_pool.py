"""Decoder worker processes and the shared-memory rings that carry their frames.

Each worker is a *spawned* process (never forked: a fork of a process that has
initialised CUDA cannot use it, and the worker must not touch the GPU anyway).
It takes decoding tasks (a whole video, or one keyframe-aligned segment of a
long one), runs ffmpeg, and writes the 48x27 RGB frames into its own ring of
shared memory; a small message on its pipe tells the model's process where the
next chunk is. The ring has a fixed size, so a worker that runs ahead waits:
memory is bounded whatever the videos' lengths, and the model's process only
copies 3.9 kB per frame out of the ring.

Messages from a worker, in order, for one task:
    ("chunk", task_id, slot, frames)   frames are in ring slot ``slot``
    ("done", task_id, report_dict)     every frame of the task was sent
    ("failed", task_id, cause)         the task stopped; cause is one line
"""
import multiprocessing as mp
import os
import queue
import signal
import time
import traceback
from dataclasses import asdict
from multiprocessing import shared_memory
from multiprocessing.connection import wait
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from shots.frames import ffmpeg_decoder as decoder

FRAME_SHAPE = (decoder.HEIGHT, decoder.WIDTH, decoder.CHANNELS)
CHUNK_FRAMES = 128


# -- the worker process --------------------------------------------------------------
_parent = None  # the model's process, which started this worker


def _orphaned() -> bool:
    """The model's process is gone (killed, out of memory): nobody reads our
    frames any more, and nobody would ever tell us to stop."""
    return os.getppid() != _parent


def _worker_main(worker_id: int, shm_name: str, slots: int, tasks, conn, free, cancel) -> None:
    global _parent
    _parent = os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    shm = shared_memory.SharedMemory(name=shm_name)
    ring = np.ndarray((slots, CHUNK_FRAMES) + FRAME_SHAPE, dtype=np.uint8, buffer=shm.buf)
    slot = 0
    try:
        while True:
            try:
                task = tasks.get(timeout=1.0)
            except queue.Empty:
                if _orphaned():
                    return
                continue
            if task is None:
                return
            slot = _run_task(task, ring, slots, slot, conn, free, cancel)
            if slot is None:
                return
    finally:
        del ring
        shm.close()
        conn.close()


def _run_task(task: dict, ring: np.ndarray, slots: int, slot: int, conn, free, cancel) -> Optional[int]:
    """Decode one task (a video, or a segment of one) into the ring; returns
    the next slot, or None when the worker must stop (its parent is gone)."""
    task_id = task["task_id"]
    reader = None
    try:
        info = decoder.VideoInfo(**task["info"])
        frames, start = task.get("frames"), task.get("start")
        threads = task.get("threads") or decoder.default_decoder_threads(info, task.get("workers", 1))
        # The segments of a split video (each with a frame count) all keep the
        # file's own timestamps, the first one too, so that they join up.
        reader = decoder.FrameReader(info, threads=threads, chunk=CHUNK_FRAMES, start=start, max_frames=frames,
                                     absolute=frames is not None)
        while True:
            chunk = reader.read()
            if chunk is None:
                break
            # Wait for the model's process to empty a slot; give up if told to.
            while not free.acquire(timeout=0.5):
                if cancel.value == task_id:
                    break
                if _orphaned():
                    reader.kill()
                    return None
            if cancel.value == task_id:
                reader.kill()
                conn.send(("failed", task_id, "cancelled"))
                return slot
            ring[slot, : chunk.shape[0]] = chunk
            conn.send(("chunk", task_id, slot, chunk.shape[0]))
            slot = (slot + 1) % slots
        report = reader.finish(whole_video=False)
        conn.send(("done", task_id, asdict(report)))
    except decoder.DecodeError as exc:
        if reader is not None:
            reader.kill()
        conn.send(("failed", task_id, str(exc)))
    except Exception as exc:  # a bug costs one video, not the worker
        if reader is not None:
            reader.kill()
        last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" at {Path(last.filename).name}:{last.lineno}" if last else ""
        conn.send(("failed", task_id, f"unexpected error while decoding: {type(exc).__name__}: {exc}{where}"))
    return slot


# -- the model's side ----------------------------------------------------------------------
class Worker:
    def __init__(self, ctx, worker_id: int, slots: int):
        self.id = worker_id
        self.slots = slots
        self.shm = shared_memory.SharedMemory(create=True, size=slots * CHUNK_FRAMES * decoder.FRAME_BYTES)
        self.ring = np.ndarray((slots, CHUNK_FRAMES) + FRAME_SHAPE, dtype=np.uint8, buffer=self.shm.buf)
        self.tasks = ctx.Queue()
        self.free = ctx.Semaphore(slots)
        self.cancel = ctx.Value("q", -1, lock=False)
        self.conn, child_conn = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=_worker_main, name=f"step3-decoder-{worker_id}",
                                   args=(worker_id, self.shm.name, slots, self.tasks, child_conn, self.free,
                                         self.cancel),
                                   daemon=True)
        self.process.start()
        child_conn.close()
        self.busy_with: Optional[int] = None  # task id
        self.unread = 0  # chunks in the ring not yet taken

    @property
    def assignable(self) -> bool:
        # A ring holds one task's chunks at a time: slots are reused in order.
        return self.busy_with is None and self.unread == 0 and self.process.is_alive()

    def take(self, slot: int, frames: int) -> np.ndarray:
        """Copy a chunk out of the ring and hand its slot back to the worker."""
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


class DecodePool:
    """``workers`` spawned decoder processes, each with a ring of ``ring_frames``."""

    def __init__(self, workers: int, ring_frames: int = 8192):
        ctx = self._ctx = mp.get_context("spawn")
        slots = max(2, ring_frames // CHUNK_FRAMES)
        self.workers: List[Worker] = []
        try:
            for i in range(workers):
                self.workers.append(Worker(ctx, i, slots))
        except BaseException:
            self.close()
            raise
        self._by_conn = {w.conn: w for w in self.workers}
        self._retired: List[Worker] = []

    def assignable(self) -> List[Worker]:
        return [w for w in self.workers if w.assignable]

    def submit(self, worker: Worker, task: dict) -> None:
        worker.busy_with = task["task_id"]
        worker.tasks.put(task)

    def cancel(self, task_id: int) -> None:
        for w in self.workers:
            if w.busy_with == task_id:
                w.cancel.value = task_id

    def messages(self, timeout: float) -> List[Tuple[Worker, tuple]]:
        """Messages that arrived within ``timeout`` seconds, oldest first per worker."""
        out = []
        for conn in wait(list(self._by_conn), timeout):
            worker = self._by_conn.get(conn)
            if worker is None:
                continue
            while conn.poll():
                try:
                    message = conn.recv()
                except EOFError:
                    worker.process.join(1)
                    message = ("failed", worker.busy_with,
                               f"decoder process died (exit code {worker.process.exitcode})")
                    del self._by_conn[conn]
                    out.append((worker, message))
                    break
                out.append((worker, message))
                if message[0] == "chunk":
                    worker.unread += 1
                elif message[0] in ("done", "failed"):
                    worker.busy_with = None
        return out

    def replace_dead(self) -> List[Tuple[Worker, Optional[int]]]:
        """Start a new worker for each one that died; return (dead worker, its task)."""
        dead = []
        for i, w in enumerate(self.workers):
            if not w.process.is_alive():
                dead.append((w, w.busy_with))
                self._by_conn.pop(w.conn, None)
                # Its ring may still hold chunks a video will read: keep it mapped.
                self._retired.append(w)
                fresh = Worker(self._ctx, w.id, w.slots)
                self.workers[i] = fresh
                self._by_conn[fresh.conn] = fresh
        return dead

    def close(self, timeout: float = 5.0) -> None:
        # All at once: a process takes a while to exit (0.1-0.5 s measured),
        # and 15 decoders stopped one after the other kept a run 8 s longer.
        workers = self.workers + getattr(self, "_retired", [])
        for w in workers:
            w.ask_to_stop()
        deadline = time.monotonic() + timeout
        for w in workers:
            w.process.join(max(0.0, deadline - time.monotonic()))
        for w in workers:
            w.close(timeout=1.0)
        self.workers = []
        self._retired = []


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
