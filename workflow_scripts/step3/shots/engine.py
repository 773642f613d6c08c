"""STEP3's engine: find the videos, stream their frames through the model, write
the results. One ``run(config)`` call is one batch of videos.

Shape of a run (three kinds of workers, one owner of the model):
- decoder processes (``num_workers``, spawned, see decode_pool.py) each run
  ffmpeg on one video, or on one keyframe-aligned segment of a long one, and
  put the frames in their ring of shared memory; rings are bounded, so
  decoders run ahead of the model but memory stays flat;
- this thread gathers the frames of each video in order, cuts them into the
  official windows, and forms batches from the windows of every video in
  flight (a slow or long video holds no other back);
- an inference thread, the only one that touches the model, first builds and
  warms up the model (the decoders start on the first videos meanwhile), then
  runs the batches while this thread prepares the next ones;
- a video whose windows are all predicted is finalised here: scenes, then its
  two result files, written atomically.

A failure stays with its video: a bad file, a decoder error or a failed write
is one FAILED line and the batch goes on; a CUDA failure redoes the videos
concerned on the CPU; a segment that doesn't decode as planned redoes its
video in one piece.
"""
import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from shots.frames import ffmpeg_decoder as decoder
from shots import results
from shots import scenes as scenes_mod
from shots import windows as win
from shots.model.weights import AssetError, default_weights_path
from shots.frames.ffmpeg_pool import cpu_count
from shots.report import Reporter
from shots.config import Config

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# A video that takes a decoder longer than this is split into segments of about
# this much decoding work, decoded in parallel (see decoder.segment_frames).
# STEP3_SEGMENT_FRAMES fixes the segment length in frames instead (tests use it
# to split short clips); STEP3_SEGMENT_SECONDS changes the seconds (benchmarks).
SEGMENT_SECONDS = float(os.environ.get("STEP3_SEGMENT_SECONDS", "1"))
SEGMENT_FRAMES = int(os.environ.get("STEP3_SEGMENT_FRAMES", "0")) or None
RING_FRAMES = 4096           # frames each decoder can run ahead (16 MB of shared memory)
# Frames of later segments copied out of the rings before their turn, per
# decoder (16 MB each): a decoder whose segment is not the one being read
# would otherwise wait, its ring full, for the segments before it to finish.
# STEP3_READAHEAD_FRAMES sets the total instead (0: none; the benchmark's A/B).
READAHEAD_FRAMES_PER_DECODER = 4096
READAHEAD_FRAMES = os.environ.get("STEP3_READAHEAD_FRAMES")
READY_WINDOWS_PER_BATCH = 4  # windows cut ahead of the model, in batches


@dataclass
class Segment:
    start: Optional[float]          # pts of its first keyframe (None: the video's start)
    first: int                      # index of its first frame
    frames: Optional[int]           # frame count (None: to the end of the video)
    task_id: Optional[int] = None
    # Not yet read: (worker, slot, frames) still in a ring, or a read-ahead copy (an array).
    chunks: deque = field(default_factory=deque)
    report: Optional[dict] = None


@dataclass(eq=False)  # compared and hashed by identity: jobs live in sets
class Job:
    index: int
    path: Path
    name: str
    paths: results.ResultPaths
    generation: int = 0
    on_cpu: bool = False
    allow_segments: bool = True
    info: Optional[decoder.VideoInfo] = None
    segments: List[Segment] = field(default_factory=list)
    current: int = 0                 # the segment being read
    builder: win.WindowBuilder = field(default_factory=win.WindowBuilder)
    timestamps: List[float] = field(default_factory=list)
    windows_made: int = 0
    windows_total: Optional[int] = None
    outputs: Dict[int, np.ndarray] = field(default_factory=dict)
    error_count: int = 0
    error_messages: List[str] = field(default_factory=list)
    announced: bool = False
    plan: object = None              # a Future of decoder.plan_video while probing
    finished: bool = False
    started_at: Optional[float] = None
    inference_seconds: float = 0.0
    backends: set = field(default_factory=set)

    @property
    def frame_count(self) -> int:
        return len(self.timestamps)

    def remaining_seconds(self) -> float:
        """Estimated decoding time of the segments not yet handed to a decoder."""
        return sum(decoder.decode_seconds(self.info, s.frames if s.frames is not None else
                                          (self.info.expected_frames or 0) - s.first)
                   for s in self.segments if s.task_id is None)

    def reset(self) -> None:
        """Forget everything decoded or predicted; the video starts over."""
        self.generation += 1
        self.info = None
        self.segments = []
        self.current = 0
        self.builder = win.WindowBuilder()
        self.timestamps = []
        self.windows_made = 0
        self.windows_total = None
        self.outputs.clear()
        self.error_count = 0
        self.error_messages = []
        self.plan = None
        self.inference_seconds = 0.0
        self.backends = set()


@dataclass
class Window:
    job: Job
    generation: int
    number: int
    frames: np.ndarray


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


def plan_jobs(config: Config, root: Path, on_unreadable=None) -> List[Job]:
    videos = results.find_videos(root, config.extensions, on_unreadable)
    siblings: Dict[Path, List[Path]] = {}
    jobs = []
    for i, video in enumerate(videos, 1):
        folder = video.parent
        if folder not in siblings:
            siblings[folder] = results.folder_videos(folder, config.extensions)
        jobs.append(Job(i, video, results.relative_name(video, root),
                        results.result_paths(video, siblings[folder] + [video])))
    return jobs


class Engine:
    def __init__(self, config: Config, reporter: Reporter):
        self.config = config
        self.log = reporter
        self.root = Path(config.input_dir)
        self.jobs: List[Job] = []
        self.succeeded = self.failed = self.skipped = 0
        self.predictor = None
        self.weights_sha256 = ""
        self.weights_path: Optional[Path] = None
        self._first_result_after: Optional[float] = None
        self._run_started = time.perf_counter()

    # -- planning ---------------------------------------------------------------
    def _resolve_weights(self) -> Path:
        if self.config.weights_path:
            return Path(self.config.weights_path)
        return default_weights_path()

    def run(self) -> int:
        self.log.config(self.config.to_json())
        if not self.root.exists():
            self.log.error(f"input folder not found: {self.root}")
            return EXIT_USAGE
        try:
            self.jobs = plan_jobs(self.config, self.root, self._unreadable_folder)
        except results.FolderError as exc:
            self.log.error(str(exc))
            return EXIT_USAGE
        n = len(self.jobs)
        self.log.total(n)
        todo = []
        skipped = []
        for job in self.jobs:
            if not self.config.force and results.is_complete(job.path, job.paths, self.config.threshold):
                skipped.append(job)
            else:
                todo.append(job)

        if self.config.dry_run:
            return self._dry_run(todo, skipped)

        for job in skipped:
            self.log.processing(job.index, n, job.name)
            self.log.skipped(job.index, n, job.name, "results complete (use --force to redo)")
            self.skipped += 1
        if todo:
            removed = results.remove_stale_temporaries({job.path.parent for job in todo})
            if removed:
                self.log.info(f"removed {len(removed)} temporary file(s) left by an interrupted run")
            code = self._prepare_model()
            if code is None:
                code = self._process(todo)
            if code is not None:  # no model: nothing could be analysed
                self.failed = len(todo)
                self.log.summary(self.succeeded, n, self.failed, self.skipped)
                return code
        self.log.summary(self.succeeded, n, self.failed, self.skipped)
        if self._first_result_after is not None:
            self.log.info(f"first result after {self._first_result_after:.1f} s; "
                          f"run took {time.perf_counter() - self._run_started:.1f} s")
        return EXIT_FAILED if self.failed else EXIT_OK

    def _unreadable_folder(self, folder: Path, cause: str) -> None:
        self.log.warning(f"{results.relative_name(folder, self.root)}: folder skipped, cannot read it: {cause}")

    def _dry_run(self, todo: List[Job], skipped: List[Job]) -> int:
        n = len(self.jobs)
        skipped_ids = {id(j) for j in skipped}
        for job in self.jobs:
            self.log.processing(job.index, n, job.name)
            if id(job) in skipped_ids:
                self.log.skipped(job.index, n, job.name, "results complete (use --force to redo)")
                continue
            try:
                info = decoder.probe(job.path)
                detail = (f"{info.width}x{info.height} {info.codec}, {info.fps:.3f} fps, "
                          f"about {info.expected_frames or '?'} frames")
            except decoder.DecodeError as exc:
                detail = f"would fail: {exc}"
            self.log.line(f"PLAN: {job.index}/{n}: {job.name} -> {results.relative_name(job.paths.csv, self.root)} ({detail})")
        self.log.line(f"DRY_RUN: {len(todo)} video(s) would be analysed, {len(skipped)} skipped; "
                      f"no model loaded, nothing written")
        return EXIT_OK

    def _prepare_model(self) -> Optional[int]:
        """Choose the device and read the weights; the model itself is built and
        warmed up by the inference thread while the first videos decode."""
        # Imported here so that a dry run or a run with nothing to do never loads torch.
        from shots.model import predictor as inference
        try:
            self.weights_path = self._resolve_weights()
        except AssetError as exc:
            self.log.error(f"cannot find the model weights: {exc}")
            return EXIT_USAGE
        self.predictor = inference.Predictor(
            self.weights_path, self.config.device, self.config.mixed_precision, self.config.torchscript,
            self.config.torchscript_auto_fallback, self.config.batch_size, self.config.cpu_threads, self.log,
            self.config.cpu_fast)
        try:
            self._model_device = self.predictor.prepare()
        except inference.WeightsError as exc:
            self.log.error(str(exc))
            return EXIT_USAGE
        self.weights_sha256 = results.sha256_file(self.weights_path)
        return None

    # -- the pipeline ----------------------------------------------------------------
    def _process(self, todo: List[Job]) -> Optional[int]:
        """Decode, predict and write every video; an exit code if the model
        could not be loaded (then nothing was written)."""
        from shots.frames.ffmpeg_pool import DecodePool
        from shots.model import predictor as inference
        self._DeviceFailure = inference.DeviceFailure
        self._tasks: Dict[int, tuple] = {}  # task id -> (job, generation, segment index)
        self._next_task = 0
        self._ready: List[Window] = []
        self._in_flight = 0
        self._batches: "queue.Queue" = queue.Queue()
        self._results: "queue.Queue" = queue.Queue()
        # Probing (and, for long videos, finding keyframes) runs ahead in threads:
        # each is an ffprobe process, and decoders start as soon as a plan is known.
        self.workers = decoder_processes(self.config.num_workers, self._model_device)
        self._max_tasks = self.workers  # fewer if the model falls back to the CPU while loading
        self._model_ready = False
        self._load_failed: Optional[int] = None
        if self.config.num_workers == "auto":
            self.log.info(f"{self.workers} decoder process(es) (num_workers auto, {cpu_count()} cores, "
                          f"model on {self._model_device})")
        self._prober = ThreadPoolExecutor(max_workers=max(2, min(8, self.workers * 2)),
                                          thread_name_prefix="probe")
        self._planning: set = set()   # jobs being probed
        self._active: list = []       # jobs with a plan, not finished, in index order
        self._unfinished = len(todo)
        self._held = 0  # frames read ahead out of the rings
        self._readahead = (int(READAHEAD_FRAMES) if READAHEAD_FRAMES is not None
                           else READAHEAD_FRAMES_PER_DECODER * self.workers)
        self._pool = None
        # The model loads in the inference thread while the decoders start on
        # the first videos (CUDA's start and the warm-up take seconds).
        infer = threading.Thread(target=self._inference_loop, name="inference", daemon=True)
        infer.start()
        try:
            self._pool = DecodePool(self.workers, RING_FRAMES)
            for job in todo:
                problem = results.name_problem(job.paths)
                if problem:
                    self._fail(job, problem)
                else:
                    self._plan(job)
            while self._unfinished and self._load_failed is None:
                self._collect_plans()
                self._assign_tasks()
                # Model fully fed: sleep until it hands a batch back (no busy loop
                # beside a CPU model that needs every core).
                limit = READY_WINDOWS_PER_BATCH * self.predictor.batch_size
                if self._in_flight >= 2 or (self._in_flight and len(self._ready) >= limit):
                    self._collect_results(wait=0.05)
                    timeout = 0.0
                else:
                    timeout = 0.002 if self._model_ready and (self._ready or self._in_flight) else 0.05
                for worker, message in self._pool.messages(timeout):
                    self._on_message(worker, message)
                self._read_ahead()
                for job in self._active:
                    self._read_chunks(job)
                if any(job.finished for job in self._active):
                    self._active = [job for job in self._active if not job.finished]
                self._collect_results()
                self._send_batches()
                for worker, task_id in self._pool.replace_dead():
                    entry = self._tasks.pop(task_id, None) if task_id is not None else None
                    if entry and entry[0].generation == entry[1]:
                        self._fail(entry[0], f"decoder process died (exit code {worker.process.exitcode})")
        finally:
            self._batches.put(None)
            infer.join(timeout=60)
            self._prober.shutdown(wait=False, cancel_futures=True)
            if self._pool is not None:
                self._pool.close()
        return self._load_failed

    def _plan(self, job: Job) -> None:
        split = job.allow_segments and self.workers > 1
        job.plan = (job.generation, self._prober.submit(
            decoder.plan_video, job.path, SEGMENT_SECONDS if split else None, SEGMENT_FRAMES if split else None))
        self._planning.add(job)
        if job in self._active:
            self._active.remove(job)

    def _collect_plans(self) -> None:
        for job in [j for j in self._planning if j.plan[1].done()]:
            self._planning.discard(job)
            generation, future = job.plan
            job.plan = None
            if generation != job.generation or job.finished:
                continue
            try:
                info, planned = future.result()
            except decoder.DecodeError as exc:
                self._fail(job, str(exc))
                continue
            except Exception as exc:
                self._fail(job, f"unexpected error while probing: {type(exc).__name__}: {exc}")
                continue
            job.info = info
            job.segments = [Segment(p["start"], p["first"], p["frames"]) for p in planned]
            self._active.append(job)
            self._active.sort(key=lambda j: j.index)

    def _assign_tasks(self) -> None:
        busy = sum(1 for w in self._pool.workers if w.busy_with is not None)
        workers = self._pool.assignable()[:max(0, self._max_tasks - busy)]
        if not workers:
            return
        # Longest remaining work first, so that no long video is left to finish
        # alone at the end; within a video, segments go in order (they are read
        # in order, and a later one would only wait in its decoder's ring).
        ready = [j for j in self._active if not j.finished and any(s.task_id is None for s in j.segments)]
        ready.sort(key=lambda j: -j.remaining_seconds())
        while workers and ready:
            job = ready[0]
            i = next(k for k, s in enumerate(job.segments) if s.task_id is None)
            seg = job.segments[i]
            self._submit(workers.pop(0), job, i, {"info": self._info_dict(job), "start": seg.start,
                                                  "frames": seg.frames})
            if any(s.task_id is None for s in job.segments):
                ready.sort(key=lambda j: -j.remaining_seconds())
            else:
                ready.pop(0)

    @staticmethod
    def _info_dict(job: Job) -> dict:
        from dataclasses import asdict
        d = asdict(job.info)
        d["path"] = str(d["path"])
        return d

    def _submit(self, worker, job: Job, segment: int, extra: dict) -> None:
        self._next_task += 1
        task_id = self._next_task
        self._tasks[task_id] = (job, job.generation, segment)
        job.segments[segment].task_id = task_id
        self._announce(job)  # its decoding starts
        threads = None if self.config.decoder_threads == "auto" else int(self.config.decoder_threads)
        self._pool.submit(worker, dict(extra, task_id=task_id, path=str(job.path), threads=threads,
                                       workers=self.workers))

    def _on_message(self, worker, message: tuple) -> None:
        kind, task_id = message[0], message[1]
        entry = self._tasks.get(task_id)
        live = entry is not None and entry[0].generation == entry[1] and not entry[0].finished
        if kind == "chunk":
            if live:
                job, _, seg_index = entry
                job.segments[seg_index].chunks.append((worker, message[2], message[3]))
            else:
                worker.drop()
            return
        if kind in ("done", "failed"):
            self._tasks.pop(task_id, None)
        if not live:
            return
        job, _, seg_index = entry
        if kind == "done":
            job.segments[seg_index].report = message[2]
        elif kind == "failed" and message[2] != "cancelled":
            seg = job.segments[seg_index]
            if len(job.segments) > 1:
                # Possibly the split's fault (an odd file's keyframes or timestamps):
                # one piece decides; a damaged file then fails with its own cause.
                self.log.warning(f"{job.name}: the segment at frame {seg.first} failed to decode "
                                 f"({message[2]}): decoding the video in one piece")
                self._restart(job, allow_segments=False)
            else:
                self._fail(job, message[2])

    def _read_chunks(self, job: Job) -> None:
        """Feed the job's frames, in order, to its window builder."""
        limit = READY_WINDOWS_PER_BATCH * self.predictor.batch_size
        while not job.finished and job.current < len(job.segments) and len(self._ready) < limit:
            seg = job.segments[job.current]
            if seg.chunks:
                self._add_windows(job, job.builder.push(self._take(seg.chunks.popleft())))
                continue
            if seg.report is None:
                return  # waiting for the decoder
            if not self._segment_ok(job, seg):
                return
            job.timestamps.extend(seg.report["timestamps"])
            job.error_count += seg.report["error_count"]
            job.error_messages += seg.report["error_messages"]
            job.current += 1
        if not job.finished and job.segments and job.current == len(job.segments) and job.windows_total is None:
            self._end_of_video(job)

    def _take(self, chunk) -> np.ndarray:
        if isinstance(chunk, np.ndarray):
            self._held -= chunk.shape[0]
            return chunk
        worker, slot, n = chunk
        return worker.take(slot, n)

    def _read_ahead(self) -> None:
        """Copy the frames of segments whose turn has not come out of their
        decoders' rings, within the read-ahead budget, so that those decoders
        go on (and, once done, take other work) instead of waiting."""
        if self._held >= self._readahead:
            return
        for job in self._active:
            for seg in job.segments[job.current + 1:]:
                for i in range(len(seg.chunks)):
                    chunk = seg.chunks[i]
                    if isinstance(chunk, np.ndarray):
                        continue
                    if self._held + chunk[2] > self._readahead:
                        return
                    seg.chunks[i] = self._take(chunk)
                    self._held += chunk[2]

    def _segment_ok(self, job: Job, seg: Segment) -> bool:
        got = seg.report["frame_count"]
        first = seg.report["timestamps"][0] if seg.report["timestamps"] else None
        if seg.frames is None or (got == seg.frames and (seg.start is None or abs(first - seg.start) < 1e-3)):
            return True
        # The keyframe plan and the decoder disagree (an odd file): decode it in one piece.
        if got != seg.frames:
            what = f"gave {got} frames instead of {seg.frames}"
        else:
            what = f"started at {first:.3f} s instead of {seg.start:.3f} s" if first is not None else "gave no frame"
        self.log.warning(f"{job.name}: the segment at frame {seg.first} {what}: decoding the video in one piece")
        self._restart(job, allow_segments=False)
        return False

    def _end_of_video(self, job: Job) -> None:
        origin = job.timestamps[0] if job.timestamps else 0.0
        job.timestamps = [t - origin for t in job.timestamps]
        try:
            decoder.check_coverage(job.info, job.timestamps,
                                   job.error_messages[-1] if job.error_messages else "")
        except decoder.DecodeError as exc:
            self._fail(job, str(exc))
            return
        self._add_windows(job, job.builder.finish())
        job.windows_total = job.windows_made
        self._maybe_finish(job)

    def _add_windows(self, job: Job, made: List[np.ndarray]) -> None:
        for frames in made:
            self._ready.append(Window(job, job.generation, job.windows_made, frames))
            job.windows_made += 1

    def _restart(self, job: Job, allow_segments: bool = True, on_cpu: Optional[bool] = None,
                 again: bool = True) -> None:
        """Drop what the video has in flight; decode it again unless ``again`` is False."""
        for seg in job.segments:
            for chunk in seg.chunks:
                if isinstance(chunk, np.ndarray):
                    self._held -= chunk.shape[0]
                else:
                    chunk[0].drop()
            if seg.task_id is not None:
                self._pool.cancel(seg.task_id)
        job.reset()
        job.allow_segments = job.allow_segments and allow_segments
        if on_cpu is not None:
            job.on_cpu = on_cpu
        self._ready = [w for w in self._ready if w.job is not job]
        if again:
            self._plan(job)

    # -- batches and the inference thread ------------------------------------------
    def _send_batches(self) -> None:
        """Keep the model busy: a partial batch only when it would otherwise idle."""
        self._ready = [w for w in self._ready if w.generation == w.job.generation and not w.job.finished]
        if not self._model_ready:
            return
        size = self.predictor.batch_size
        while self._ready and self._in_flight < 2:
            if self._in_flight == 1 and len(self._ready) < size:
                return
            on_cpu = self._ready[0].job.on_cpu or self.predictor.primary.device.type == "cpu"
            batch = [w for w in self._ready if (w.job.on_cpu or self.predictor.primary.device.type == "cpu")
                     == on_cpu][:size]
            taken = set(map(id, batch))
            self._ready = [w for w in self._ready if id(w) not in taken]
            self._in_flight += 1
            self._batches.put((batch, on_cpu))

    def _inference_loop(self) -> None:
        try:
            self.predictor.load()
        except BaseException as exc:  # the main thread reports it and ends the run
            self._results.put(("loaded", exc))
            return
        self._results.put(("loaded", None))
        while True:
            item = self._batches.get()
            if item is None:
                return
            batch, on_cpu = item
            started = time.perf_counter()
            try:
                probs, backend = self.predictor.run(np.stack([w.frames for w in batch]), on_cpu=on_cpu)
                self._results.put((batch, probs, backend, None, time.perf_counter() - started))
            except BaseException as exc:  # handed to the main thread, which decides
                self._results.put((batch, None, None, exc, 0.0))

    def _collect_results(self, wait: float = 0.0) -> None:
        while True:
            try:
                item = self._results.get(timeout=wait) if wait else self._results.get_nowait()
            except queue.Empty:
                return
            wait = 0.0
            if item[0] == "loaded":
                self._model_loaded(item[1])
                continue
            batch, probs, backend, error, seconds = item
            self._in_flight -= 1
            live = [(i, w) for i, w in enumerate(batch) if w.generation == w.job.generation and not w.job.finished]
            jobs = {id(w.job): w.job for _, w in live}
            if error is not None:
                if isinstance(error, self._DeviceFailure):
                    self._device_failed(list(jobs.values()), str(error))
                else:
                    text = str(error).splitlines()[0] if str(error) else ""
                    for job in jobs.values():
                        self._fail(job, f"model failed: {type(error).__name__}: {text}")
                continue
            share = seconds / max(1, len(batch))
            for i, w in live:
                w.job.outputs[w.number] = probs[i]
                w.job.inference_seconds += share
                w.job.backends.add((str(backend.device), backend.precision, backend.kind))
            for job in jobs.values():
                self._report_frames(job)
                self._maybe_finish(job)

    def _model_loaded(self, error: Optional[BaseException]) -> None:
        from shots.model import predictor as inference
        if error is None:
            self._model_ready = True
            # A GPU that failed while loading leaves a CPU model: decoders as for one.
            self._max_tasks = min(self.workers, decoder_processes(self.config.num_workers,
                                                                  self.predictor.primary.device.type))
            return
        if isinstance(error, (inference.WeightsError, inference.SetupError)):
            self.log.error(str(error))
        else:
            text = str(error).splitlines()[0] if str(error) else ""
            self.log.error(f"the model could not be loaded: {type(error).__name__}: {text}")
        self._load_failed = EXIT_USAGE

    def _device_failed(self, jobs: List[Job], cause: str) -> None:
        if not self.predictor.gpu_healthy():
            self.log.warning(f"the GPU is no longer usable ({cause}): every remaining video runs on the CPU")
            self.predictor.use_cpu("fallback: the GPU stopped working")
            jobs = jobs + [j for j in self._active if not j.finished and not j.on_cpu and j not in jobs]
        for job in jobs:
            self.log.warning(f"{job.name}: CUDA failed ({cause}): redoing this video on the CPU")
            self._restart(job, on_cpu=True)

    def _announce(self, job: Job) -> None:
        if not job.announced:
            job.announced = True
            job.started_at = time.perf_counter()
            self.log.processing(job.index, len(self.jobs), job.name)

    def _report_frames(self, job: Job) -> None:
        # The container's frame count is an estimate until the decoder has finished.
        if job.windows_total is not None:
            total = job.frame_count
        else:
            total = (job.info.expected_frames if job.info else None) or 0
        done = len(job.outputs) * win.STRIDE
        if total:
            done = min(done, total)  # the last window holds padding frames
        self.log.frames(job.index, len(self.jobs), done, total)

    def _maybe_finish(self, job: Job) -> None:
        if job.finished or job.windows_total is None or len(job.outputs) < job.windows_total:
            return
        try:
            self._write(job)
        except OSError as exc:
            self._fail(job, results.describe_write_error(exc))
            return
        except Exception as exc:
            self._fail(job, f"unexpected error while writing results: {type(exc).__name__}: {exc}")
            return
        job.finished = True
        self._unfinished -= 1
        self.succeeded += 1
        if self._first_result_after is None:
            self._first_result_after = time.perf_counter() - self._run_started

    def _fail(self, job: Job, cause: str) -> None:
        if job.finished:
            return
        self._announce(job)
        self._restart(job, again=False)
        job.finished = True
        self._unfinished -= 1
        self.failed += 1
        self.log.failed(job.index, len(self.jobs), job.name, cause)
        removed = results.remove_stale_results(job.path, job.paths)
        if removed:
            self.log.warning(f"{job.name}: removed the results of an earlier version of this video "
                             f"({', '.join(p.name for p in removed)}): they no longer describe it")

    # -- results ---------------------------------------------------------------------
    def _write(self, job: Job) -> None:
        n = job.frame_count
        timestamps = job.timestamps
        ordered = [job.outputs[k] for k in range(job.windows_total)]
        single = win.assemble([o[0] for o in ordered], n)
        many = win.assemble([o[1] for o in ordered], n)
        found = scenes_mod.predictions_to_scenes(single, self.config.threshold)
        info = job.info
        # No declared rate (rare: some raw streams): the mean rate of the decoded
        # frames; a single frame with no rate at all gets the usual 25.
        fps = info.fps if info.fps > 0 else ((n - 1) / timestamps[-1] if n > 1 and timestamps[-1] > 0 else 25.0)
        rows = scenes_mod.scene_rows(found, timestamps, fps)
        self.log.frames(job.index, len(self.jobs), n, n, final=True)

        devices = sorted({d for d, _, _ in job.backends})
        precisions = sorted({p for _, p, _ in job.backends})
        meta = {
            "video": {
                "file": job.path.name,
                "identity": results.video_identity(job.path),
                "codec": info.codec, "width": info.width, "height": info.height,
                "fps": fps, "frame_rate": info.fps_fraction,
                "duration_s": info.duration,
                "frame_count": n,
                "decoded_span_s": timestamps[-1] + (1.0 / fps if fps > 0 else 0.0),
                "decode_errors": job.error_count,
                "decoded_in_segments": len(job.segments),
            },
            "threshold": self.config.threshold,
            "scene_count": len(found),
            "scenes": [{"no": r[0], "timecode_in": r[1], "timecode_out": r[2],
                        "frame_in": r[3], "frame_out": r[4]} for r in rows],
            "model": {
                "name": "TransNetV2",
                "weights_file": self.weights_path.name,
                "weights_sha256": self.weights_sha256,
            },
            "device": devices[0] if len(devices) == 1 else devices,
            "precision": precisions[0] if len(precisions) == 1 else precisions,
            "torchscript": all(kind == "torchscript" for _, _, kind in job.backends),
            "implementation": sorted({kind for _, _, kind in job.backends}),
            "timings": {
                "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "wall_s": round(time.perf_counter() - (job.started_at or time.perf_counter()), 3),
                "inference_s": round(job.inference_seconds, 3),
                "model_load_s": round(self.predictor.load_seconds, 3),
            },
            "predictions": {
                "single_frame": [round(float(v), 6) for v in single],
                "all_frames": [round(float(v), 6) for v in many],
            },
        }
        results.write_results(job.paths, results.csv_text(scenes_mod.CSV_HEADER, rows), meta)
        if job.error_count:
            self.log.warning(f"{job.name}: {job.error_count} decoding error(s), concealed by the decoder "
                             f"(first: {job.error_messages[0] if job.error_messages else '?'})")
        self.log.success(job.index, len(self.jobs), job.name,
                         results.relative_name(job.paths.csv, self.root), len(found))


def run(config: Config, reporter: Reporter) -> int:
    return Engine(config, reporter).run()
