"""A frame source (frames/source.py) whose decoders are Ray tasks on the
cluster's CPU workers: the scheduler (scheduler.py) plans, orders and reads
the videos exactly as with local decoder processes.

Backpressure, with Ray's own means: each decoding task is a generator with
at most ``GENERATOR_BACKLOG`` chunks not yet taken by the driver (Ray pauses
it beyond that), and the driver takes at most ``slots`` chunks of a task
that the scheduler has not read yet (the local decoders' ring): frames in
flight stay bounded by (tasks at once) x (backlog + slots) x 2 MB, whatever
the number and the length of the videos.
"""
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import ray

from shots.executors import ray_tasks
from shots.frames.messages import (DecodeReport, DecodeTask, FrameChunk, FramesReady, MemoryChunk, SegmentPlan,
                                   TaskDone, TaskFailed)
from shots.frames.probe import DecodeError, VideoInfo
from shots.frames.segments import decode_seconds, plan_video
from shots.frames.source import FrameSource

GENERATOR_BACKLOG = 4


@dataclass
class _Task:
    generator: object  # ray.ObjectRefGenerator
    held: int = 0      # chunks taken from Ray, not yet read or copied ahead by the scheduler


class _HeldChunk(FrameChunk):
    """A chunk in the driver's memory that counts against its task's slots
    until the scheduler reads it (or copies it ahead: ``detach``)."""
    holds_source_buffer = True

    def __init__(self, task: _Task, frames: np.ndarray):
        self._task, self._array, self.frames = task, frames, frames.shape[0]

    def _release(self) -> None:
        if self._task is not None:
            self._task.held -= 1
            self._task = None

    def take(self) -> np.ndarray:
        self._release()
        return self._array

    def drop(self) -> None:
        self._release()
        self._array = None

    def detach(self) -> FrameChunk:
        chunk = MemoryChunk(self._array)
        self._release()
        return chunk


class RayFrameSource(FrameSource):
    def __init__(self, tasks_at_once: int, slots: int, threads: int, segment_seconds: Optional[float],
                 segment_frames: Optional[int], probe_here: bool = False):
        self._capacity = max(1, tasks_at_once)
        self._probe_here = probe_here
        self._slots = max(2, slots)
        self._threads = threads
        self._segment_seconds, self._segment_frames = segment_seconds, segment_frames
        self._tasks: Dict[int, _Task] = {}
        self._cancelled: List[int] = []

    @property
    def capacity(self) -> int:
        return self._capacity

    def plan(self, path: Path, split: bool) -> Tuple[VideoInfo, List[SegmentPlan]]:
        args = (self._segment_seconds, self._segment_frames) if split else (None, None)
        # Absolute: a worker's current folder is not this process's.
        path = os.path.abspath(path)
        if self._probe_here:
            # A local instance is this machine: its ffprobe runs from here, as
            # the local engine's, and no worker process is started for it (each
            # costs about 1 s of a core at the start of a run on 2 cores).
            return plan_video(Path(path), *args)
        result = ray.get(ray_tasks.plan.remote(path, *args))
        if isinstance(result, ray_tasks.Failure):
            raise DecodeError(result.cause)
        return result

    def cost(self, info: VideoInfo, frames: Optional[int]) -> float:
        return decode_seconds(info, frames)

    def idle(self, limit: int) -> int:
        return max(0, min(limit, self._capacity) - len(self._tasks))

    def submit(self, task: DecodeTask) -> None:
        generator = ray_tasks.decode.options(_generator_backpressure_num_objects=GENERATOR_BACKLOG).remote(
            task.info, task.segment, task.threads or self._threads)
        self._tasks[task.task_id] = _Task(generator)

    def cancel(self, task_id: int) -> None:
        task = self._tasks.pop(task_id, None)
        if task is not None:
            _cancel(task.generator)
            self._cancelled.append(task_id)

    def poll(self, timeout: float) -> list:
        out = [TaskFailed(t, "cancelled", cancelled=True) for t in self._cancelled]
        self._cancelled = []
        waiting = {id(t.generator): (tid, t) for tid, t in self._tasks.items() if t.held < self._slots}
        if not waiting:
            time.sleep(timeout)  # every task's slots are full: the scheduler reads first
            return out
        generators = [t.generator for _, t in waiting.values()]
        ready, rest = ray.wait(generators, num_returns=1, timeout=timeout, fetch_local=False)
        if ready and rest:
            ready += ray.wait(rest, num_returns=len(rest), timeout=0, fetch_local=False)[0]
        for generator in ready:
            task_id, task = waiting[id(generator)]
            out += self._receive(task_id, task)
        return out

    def _receive(self, task_id: int, task: _Task) -> list:
        """What a task has ready now, up to its free slots."""
        out = []
        while task.held < self._slots:
            try:
                ref = next(task.generator)
            except StopIteration:  # its report or failure came first; nothing more
                self._tasks.pop(task_id, None)
                break
            try:
                item = ray.get(ref)
            except ray.exceptions.RayError as exc:  # its worker died beyond the retries, or its node
                self._tasks.pop(task_id, None)
                out.append(TaskFailed(task_id, f"decoding task lost: {type(exc).__name__}"))
                break
            if isinstance(item, np.ndarray):
                task.held += 1
                out.append(FramesReady(task_id, _HeldChunk(task, item)))
            else:
                self._tasks.pop(task_id, None)
                out.append(TaskDone(task_id, item) if isinstance(item, DecodeReport)
                           else TaskFailed(task_id, item.cause))
                break
            if not ray.wait([task.generator], timeout=0, fetch_local=False)[0]:
                break
        return out

    def close(self) -> None:
        for task in self._tasks.values():
            _cancel(task.generator)
        self._tasks.clear()


def _cancel(generator) -> None:
    try:
        ray.cancel(generator, force=False)
    except Exception:  # already finished, or the cluster is going away
        pass
