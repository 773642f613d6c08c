"""The body of a decoder process: it takes decoding tasks from its queue, runs
ffmpeg (see ffmpeg_reader.py) and writes the 48x27 RGB frames into its ring of
shared memory, telling the model's process where each chunk is.

The ring has a fixed number of slots, counted by a semaphore the model's
process releases as it reads: a decoder that runs ahead waits, so memory is
bounded whatever the videos' lengths.
"""
import os
import queue
import signal
import traceback
from dataclasses import dataclass
from multiprocessing import shared_memory
from pathlib import Path
from typing import Optional

import numpy as np

from shots.frames.ffmpeg_reader import CHANNELS, HEIGHT, WIDTH, FrameReader
from shots.frames.messages import DecodeTask, TaskDone, TaskFailed
from shots.frames.probe import DecodeError

FRAME_SHAPE = (HEIGHT, WIDTH, CHANNELS)
CHUNK_FRAMES = 128


@dataclass(frozen=True)
class RingChunkWritten:
    """Process -> model's process: ``frames`` frames of ``task_id`` are in ``slot``."""
    task_id: int
    slot: int
    frames: int


class _Stop(Exception):
    """The model's process is gone: nobody reads our frames any more."""


class _Decoder:
    def __init__(self, shm_name: str, slots: int, conn, free, cancel):
        self.parent = os.getppid()
        self.shm = shared_memory.SharedMemory(name=shm_name)
        self.ring = np.ndarray((slots, CHUNK_FRAMES) + FRAME_SHAPE, dtype=np.uint8, buffer=self.shm.buf)
        self.slots, self.slot = slots, 0
        self.conn, self.free, self.cancel = conn, free, cancel

    def orphaned(self) -> bool:
        """The model's process is gone (killed, out of memory): nobody would ever tell us to stop."""
        return os.getppid() != self.parent

    def close(self) -> None:
        del self.ring
        self.shm.close()
        self.conn.close()

    def run(self, task: DecodeTask) -> None:
        """Decode one task into the ring; raises _Stop when the worker must end."""
        reader = None
        try:
            seg = task.segment
            # The segments of a split video (each with a frame count) all keep the
            # file's own timestamps, the first one too, so that they join up.
            reader = FrameReader(task.info, threads=task.threads, chunk=CHUNK_FRAMES, start=seg.start,
                                 max_frames=seg.frames, absolute=seg.frames is not None)
            while True:
                chunk = reader.read()
                if chunk is None:
                    break
                if not self._wait_for_a_free_slot(task.task_id, reader):
                    self.conn.send(TaskFailed(task.task_id, "cancelled", cancelled=True))
                    return
                self.ring[self.slot, : chunk.shape[0]] = chunk
                self.conn.send(RingChunkWritten(task.task_id, self.slot, chunk.shape[0]))
                self.slot = (self.slot + 1) % self.slots
            self.conn.send(TaskDone(task.task_id, reader.finish()))
        except DecodeError as exc:
            if reader is not None:
                reader.kill()
            self.conn.send(TaskFailed(task.task_id, str(exc)))
        except _Stop:
            raise
        except Exception as exc:  # a bug costs one video, not the worker
            if reader is not None:
                reader.kill()
            last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f" at {Path(last.filename).name}:{last.lineno}" if last else ""
            self.conn.send(TaskFailed(task.task_id, f"unexpected error while decoding: "
                                                    f"{type(exc).__name__}: {exc}{where}"))

    def _wait_for_a_free_slot(self, task_id: int, reader: FrameReader) -> bool:
        """False if the task was cancelled meanwhile (its ffmpeg is then killed)."""
        acquired = False
        while not acquired and self.cancel.value != task_id:
            acquired = self.free.acquire(timeout=0.5)
            if not acquired and self.orphaned():
                reader.kill()
                raise _Stop()
        if self.cancel.value == task_id:
            if acquired:
                self.free.release()  # the slot stays free for the next task
            reader.kill()
            return False
        return True


def decoder_main(shm_name: str, slots: int, tasks, conn, free, cancel) -> None:
    """A decoder process's entry point (spawned: see ffmpeg_source.py)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    decoder = _Decoder(shm_name, slots, conn, free, cancel)
    try:
        while True:
            try:
                task: Optional[DecodeTask] = tasks.get(timeout=1.0)
            except queue.Empty:
                if decoder.orphaned():
                    return
                continue
            if task is None:
                return
            decoder.run(task)
    except _Stop:
        return
    finally:
        decoder.close()
