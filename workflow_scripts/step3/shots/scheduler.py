"""Decoding work for the jobs of a run: probe and plan them ahead, hand their
segments to a frame source, and read their frames back, in order, into
windows.

The frame source may be any (frames/source.py); the scheduler only sees
tasks, chunks and messages. What to do with a failure (fail the video, redo
it in one piece) is the executor's call: the scheduler reports it to
``on_failure(job, cause, split)``.
"""
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from shots.frames.messages import DecodeTask, FramesReady, TaskDone, TaskFailed
from shots.frames.probe import DecodeError
from shots.frames.source import FrameSource
from shots.video_job import VideoJob

# Frames of later segments copied out of the source's buffers before their
# turn, per decoder (16 MB each): a decoder whose segment is not the one being
# read would otherwise wait, its ring full, for the segments before it.
READAHEAD_FRAMES_PER_DECODER = 4096


class DecodeScheduler:
    def __init__(self, source: FrameSource, max_tasks: int, readahead_frames: int,
                 on_failure: Callable[[VideoJob, str, bool], None], on_start: Callable[[VideoJob], None],
                 on_fallback: Optional[Callable[[VideoJob, str], None]] = None):
        self.source = source
        self._on_fallback = on_fallback  # a GPU decoder gave up on the job: decode it on the CPU
        self.max_tasks = max_tasks  # lowered if the model ends up on the CPU
        self.readahead_frames = readahead_frames
        self._on_failure, self._on_start = on_failure, on_start
        # Probing (and, for long videos, finding keyframes) runs ahead in threads:
        # each is an ffprobe process, and decoders start as soon as a plan is known.
        self._prober = ThreadPoolExecutor(max_workers=max(2, min(8, source.capacity * 2)),
                                          thread_name_prefix="probe")
        self._planning: Dict[VideoJob, Tuple[int, object]] = {}  # job -> (generation, Future of its plan)
        self.active: List[VideoJob] = []  # jobs with a plan, not finished, in index order
        self._tasks: Dict[int, Tuple[VideoJob, int, int]] = {}  # task id -> (job, generation, segment)
        self._next_task = 0
        self._held = 0  # frames copied ahead out of the source's buffers

    # -- planning ---------------------------------------------------------------------
    def plan(self, job: VideoJob) -> None:
        split = job.allow_segments and self.source.capacity > 1
        self._planning[job] = (job.generation, self._prober.submit(self.source.plan, job.path, split))
        if job in self.active:
            self.active.remove(job)

    def collect_plans(self) -> None:
        for job, (generation, future) in [(j, p) for j, p in self._planning.items() if p[1].done()]:
            del self._planning[job]
            if generation != job.generation or job.finished:
                continue
            try:
                info, plans = future.result()
            except DecodeError as exc:
                self._on_failure(job, str(exc), False)
                continue
            except Exception as exc:
                self._on_failure(job, f"unexpected error while probing: {type(exc).__name__}: {exc}", False)
                continue
            job.planned(info, plans)
            planned = getattr(self.source, "planned", None)  # frames/mixed_source.py routes by the plan
            if planned is not None:
                planned(job.path, info, plans)
            self.active.append(job)
            self.active.sort(key=lambda j: j.index)

    # -- decoding ---------------------------------------------------------------------
    def _remaining_seconds(self, job: VideoJob) -> float:
        # A source's cost is in proportion to the frames: one call per video
        # (this is sorted on for every task handed out).
        expected = job.info.expected_frames
        return self.source.cost(job.info, sum(s.plan.frame_count(expected) for s in job.segments
                                              if s.task_id is None))

    def assign(self) -> None:
        """Longest remaining work first, so that no long video is left to finish
        alone at the end; within a video, segments go in order (they are read in
        order, and a later one would only wait in its decoder's buffer), unless
        the source picks another (see ``choose``)."""
        free = self.source.idle(self.max_tasks)
        if not free:
            return  # the usual case, many times a second: nothing to sort
        ready = [j for j in self.active if not j.finished and j.waiting_segments()]
        ready.sort(key=lambda j: -self._remaining_seconds(j))
        # A source of several kinds (frames/mixed_source.py) says which of a
        # video's waiting segments it can start now, if any: the first, or the
        # last (the CPU helping NVDEC from a video's end); a video for a busy
        # kind leaves the free ones to others.
        choose = getattr(self.source, "choose", None)
        while free and ready:
            if choose is not None:
                picks = {job: index for job in ready if (index := self._choice(job, choose)) is not None}
                ready = [job for job in ready if job in picks]
                if not ready:
                    break
                index = picks[ready[0]]
            else:
                index = next(i for i, s in enumerate(ready[0].segments) if s.task_id is None)
            job = ready[0]
            self._submit(job, index)
            free -= 1
            if job.waiting_segments():
                ready.sort(key=lambda j: -self._remaining_seconds(j))
            else:
                ready.pop(0)

    @staticmethod
    def _choice(job: VideoJob, choose) -> Optional[int]:
        """The index of the segment of ``job`` the source would start now
        (its first or last waiting one), if any."""
        segs = job.segments
        head = next(i for i, s in enumerate(segs) if s.task_id is None)
        tail = next(i for i in range(len(segs) - 1, head - 1, -1) if segs[i].task_id is None)
        chosen = choose(job.path, segs[head].plan, segs[tail].plan)
        return None if chosen is None else head if chosen is segs[head].plan else tail

    def _submit(self, job: VideoJob, index: int) -> None:
        self._next_task += 1
        seg = job.segments[index]
        seg.task_id = self._next_task
        self._tasks[seg.task_id] = (job, job.generation, index)
        self._on_start(job)  # its decoding starts
        self.source.submit(DecodeTask(seg.task_id, job.info, seg.plan))

    def receive(self, timeout: float) -> None:
        for message in self.source.poll(timeout):
            entry = self._tasks.get(message.task_id)
            if not isinstance(message, FramesReady):
                self._tasks.pop(message.task_id, None)
            live = entry is not None and entry[0].generation == entry[1] and not entry[0].finished
            if not live:
                if isinstance(message, FramesReady):
                    message.chunk.drop()
                continue
            job, _, index = entry
            seg = job.segments[index]
            if isinstance(message, FramesReady):
                seg.chunks.append(message.chunk)
            elif isinstance(message, TaskDone):
                seg.report = message.report
            elif isinstance(message, TaskFailed) and message.fallback and self._on_fallback is not None:
                self._on_fallback(job, message.cause)
            elif isinstance(message, TaskFailed) and not message.cancelled:
                self._on_failure(job, message.cause if len(job.segments) == 1 else
                                 f"the segment at frame {seg.plan.first} failed to decode ({message.cause})",
                                 len(job.segments) > 1)

    def read_ahead(self) -> None:
        """Copy the frames of segments whose turn has not come out of the
        source's buffers, within the budget, so that their decoders go on (and,
        once done, take other work) instead of waiting."""
        if self._held >= self.readahead_frames:
            return
        for job in self.active:
            for seg in job.segments[job.current + 1:]:
                for i in range(len(seg.chunks)):  # replaced in place: no iterator over the deque
                    chunk = seg.chunks[i]
                    if not chunk.holds_source_buffer:
                        continue
                    if self._held + chunk.frames > self.readahead_frames:
                        return
                    seg.chunks[i] = chunk.detach()
                    self._held += chunk.frames

    def read(self, job: VideoJob, room: int) -> List[np.ndarray]:
        """Up to about ``room`` windows of ``job`` from the frames decoded so
        far. Raises SegmentMismatch or DecodeError (see VideoJob.advance)."""
        made: List[np.ndarray] = []
        while not job.finished and len(made) < room:
            chunk = job.next_chunk()
            if chunk is not None:
                if not chunk.holds_source_buffer:
                    self._held -= chunk.frames
                made += job.push(chunk.take())
                continue
            more = job.advance()
            if more is None:
                break
            made += more
        return made

    def forget(self, job: VideoJob) -> None:
        """``job`` is done, failed or starts over: stop whatever is decoding for
        it and free what it holds."""
        for seg in job.segments:
            for chunk in seg.chunks:
                if not chunk.holds_source_buffer:
                    self._held -= chunk.frames
                chunk.drop()
            seg.chunks.clear()
            if seg.task_id is not None:
                self.source.cancel(seg.task_id)
        self._planning.pop(job, None)
        if job in self.active:
            self.active.remove(job)
        forget_video = getattr(self.source, "forget_video", None)  # frames/mixed_source.py
        if forget_video is not None:
            forget_video(job.path)

    def close(self) -> None:
        self._prober.shutdown(wait=False, cancel_futures=True)
        self.source.close()
