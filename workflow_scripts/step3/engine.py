"""STEP3's engine: find the videos, stream their frames through the model, write
the results. One ``run(config)`` call is one batch of videos.

Shape of a run:
- decoder threads (at most ``num_workers`` at once), each driving one ffmpeg
  process, cut their video into windows and put them on one bounded queue;
  decoders run ahead of the model but never further than the queue allows;
- this thread, the only one that touches the model, takes windows from the
  queue, batches them (windows of several videos share a batch), runs the
  model and hands the probabilities back to their videos;
- a video whose frames are all decoded and all predicted is finalised: scenes,
  then its two result files, written atomically.

A failure stays with its video: a bad file, a decoder error or a failed write
is one FAILED line and the batch goes on; a CUDA failure redoes the videos
concerned on the CPU.
"""
import hashlib
import json
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

import decoder
import results
import scenes as scenes_mod
import windows as win
from assets import AssetError, default_weights_path
from progress import Reporter
from settings import Config

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass
class Job:
    index: int
    path: Path
    name: str
    paths: results.ResultPaths
    generation: int = 0
    on_cpu: bool = False
    info: Optional[decoder.VideoInfo] = None
    outputs: Dict[int, np.ndarray] = field(default_factory=dict)
    windows_total: Optional[int] = None
    report: Optional[decoder.DecodeReport] = None
    announced: bool = False
    finished: bool = False
    started_at: Optional[float] = None
    inference_seconds: float = 0.0
    backends: set = field(default_factory=set)

    def reset(self) -> None:
        self.generation += 1
        self.outputs.clear()
        self.windows_total = None
        self.report = None
        self.inference_seconds = 0.0
        self.backends = set()


# Items on the decoder -> model queue.
@dataclass
class WindowItem:
    job: Job
    generation: int
    number: int
    frames: np.ndarray


@dataclass
class DecodedItem:
    job: Job
    generation: int
    report: decoder.DecodeReport
    windows: int


@dataclass
class FailedItem:
    job: Job
    generation: int
    cause: str


def plan_jobs(config: Config, root: Path) -> List[Job]:
    videos = results.find_videos(root, config.extensions)
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
        self._queue: "queue.Queue" = queue.Queue()
        self._slots = threading.Semaphore(config.num_workers)
        self._threads: List[threading.Thread] = []
        self._stop = threading.Event()
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
        self.jobs = plan_jobs(self.config, self.root)
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
            code = self._load_model()
            if code is not None:
                self.failed = len(todo)
                self.log.summary(self.succeeded, n, self.failed, self.skipped)
                return code
            try:
                self._process(todo)
            finally:
                self._stop.set()
                for t in self._threads:
                    t.join(timeout=30)
        self.log.summary(self.succeeded, n, self.failed, self.skipped)
        if self._first_result_after is not None:
            self.log.info(f"first result after {self._first_result_after:.1f} s; "
                          f"run took {time.perf_counter() - self._run_started:.1f} s")
        return EXIT_FAILED if self.failed else EXIT_OK

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

    def _load_model(self) -> Optional[int]:
        # Imported here so that a dry run or a run with nothing to do never loads torch.
        import inference
        try:
            self.weights_path = self._resolve_weights()
        except AssetError as exc:
            self.log.error(f"cannot find the model weights: {exc}")
            return EXIT_USAGE
        self.predictor = inference.Predictor(
            self.weights_path, self.config.device, self.config.mixed_precision, self.config.torchscript,
            self.config.torchscript_auto_fallback, self.config.batch_size, self.config.cpu_threads, self.log)
        try:
            self.predictor.load()
        except inference.WeightsError as exc:
            self.log.error(str(exc))
            return EXIT_USAGE
        self.weights_sha256 = results.sha256_file(self.weights_path)
        return None

    # -- decoding (threads) ----------------------------------------------------------
    def _start_decoder(self, job: Job, holding_slot: bool) -> None:
        t = threading.Thread(target=self._decode, args=(job, job.generation, holding_slot),
                             name=f"decode-{job.index}", daemon=True)
        self._threads.append(t)
        t.start()

    def _schedule(self, todo: List[Job]) -> None:
        for job in todo:
            while not self._slots.acquire(timeout=0.2):
                if self._stop.is_set():
                    return
            if self._stop.is_set():
                self._slots.release()
                return
            self._start_decoder(job, holding_slot=True)

    def _decode(self, job: Job, generation: int, holding_slot: bool) -> None:
        if not holding_slot:
            self._slots.acquire()
        reader = None
        try:
            info = decoder.probe(job.path)
            job.info = info
            threads = (decoder.default_decoder_threads(info, self.config.num_workers)
                       if self.config.decoder_threads == "auto" else int(self.config.decoder_threads))
            reader = decoder.FrameReader(info, threads=threads)
            builder = win.WindowBuilder()
            number = 0
            while True:
                chunk = reader.read()
                if job.generation != generation or self._stop.is_set():
                    reader.kill()
                    return
                made = builder.finish() if chunk is None else builder.push(chunk)
                for frames in made:
                    if not self._put(WindowItem(job, generation, number, frames)):
                        reader.kill()
                        return
                    number += 1
                if chunk is None:
                    break
            report = reader.finish()
            self._put(DecodedItem(job, generation, report, number))
        except decoder.DecodeError as exc:
            if reader is not None:
                reader.kill()
            self._put(FailedItem(job, generation, str(exc)))
        except Exception as exc:  # a bug must cost one video, not the batch
            if reader is not None:
                reader.kill()
            self._put(FailedItem(job, generation, f"unexpected error while decoding: {type(exc).__name__}: {exc}"))
        finally:
            self._slots.release()

    def _put(self, item) -> bool:
        """Queue ``item``, waiting while the queue is full; False if its video was
        superseded or the run is stopping meanwhile."""
        while True:
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                if self._stop.is_set() or item.job.generation != item.generation:
                    return False

    # -- the model's loop (this thread) ------------------------------------------------
    def _process(self, todo: List[Job]) -> None:
        import inference
        batch_size = self.predictor.batch_size
        # Bounded: decoders wait when the model is behind, so memory stays flat
        # (a window is 389 kB; 4096 of them are 1.6 GB).
        self._queue = queue.Queue(maxsize=min(4096, max(8, 2 * batch_size)))
        # On a GPU, wait a moment for a fuller batch; on the CPU a batch is one window.
        gather_wait = 0.02 if self.predictor.primary.device.type == "cuda" else 0.0
        scheduler = threading.Thread(target=self._schedule, args=(todo,), name="scheduler", daemon=True)
        self._threads.append(scheduler)
        scheduler.start()
        batch_gpu: List[WindowItem] = []
        batch_cpu: List[WindowItem] = []
        while not all(job.finished for job in todo):
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                item = None
            while item is not None:
                self._accept(item, batch_cpu, batch_gpu)
                limit = self.predictor.batch_size
                if len(batch_gpu) >= limit or len(batch_cpu) >= limit:
                    break
                try:
                    item = self._queue.get(timeout=gather_wait) if gather_wait else self._queue.get_nowait()
                except queue.Empty:
                    item = None
            for batch, on_cpu in ((batch_gpu, False), (batch_cpu, True)):
                if batch:
                    self._run_batch(batch, on_cpu, inference.DeviceFailure)
                    batch.clear()

    def _announce(self, job: Job) -> None:
        if not job.announced:
            job.announced = True
            job.started_at = time.perf_counter()
            self.log.processing(job.index, len(self.jobs), job.name)

    def _accept(self, item, batch_cpu: List[WindowItem], batch_gpu: List[WindowItem]) -> None:
        job = item.job
        if item.generation != job.generation or job.finished:
            return  # from a decoder superseded by a redo on the CPU
        self._announce(job)
        if isinstance(item, WindowItem):
            cpu = job.on_cpu or self.predictor.primary.device.type == "cpu"
            (batch_cpu if cpu else batch_gpu).append(item)
        elif isinstance(item, DecodedItem):
            job.report = item.report
            job.windows_total = item.windows
            self._maybe_finish(job)
        elif isinstance(item, FailedItem):
            self._fail(job, item.cause)

    def _run_batch(self, batch: List[WindowItem], on_cpu: bool, DeviceFailure) -> None:
        live = [it for it in batch if it.generation == it.job.generation and not it.job.finished]
        if not live:
            return
        stacked = np.stack([it.frames for it in live])
        started = time.perf_counter()
        try:
            probs, backend = self.predictor.run(stacked, on_cpu=on_cpu)
        except DeviceFailure as exc:
            self._device_failed(live, str(exc))
            return
        except Exception as exc:  # the model failed on these windows: fail their videos
            for job in {id(it.job): it.job for it in live}.values():
                self._fail(job, f"model failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            return
        share = (time.perf_counter() - started) / len(live)
        touched = {}
        for it, p in zip(live, probs):
            it.job.outputs[it.number] = p
            it.job.inference_seconds += share
            it.job.backends.add((str(backend.device), backend.precision, backend.torchscript))
            touched[id(it.job)] = it.job
        for job in touched.values():
            self._report_frames(job)
            self._maybe_finish(job)

    def _device_failed(self, live: List[WindowItem], cause: str) -> None:
        jobs = {id(it.job): it.job for it in live}
        healthy = self.predictor.gpu_healthy()
        if not healthy:
            self.log.warning(f"the GPU is no longer usable ({cause}): every remaining video runs on the CPU")
            self.predictor.primary = self.predictor.cpu_backend()
            self.predictor.gpu_usable = False
            jobs.update({id(j): j for j in self.jobs
                         if j.announced and not j.finished and not j.on_cpu})
        for job in jobs.values():
            self.log.warning(f"{job.name}: CUDA failed ({cause}): redoing this video on the CPU")
            job.reset()
            job.on_cpu = True
            self._start_decoder(job, holding_slot=False)

    def _report_frames(self, job: Job) -> None:
        # The container's frame count is an estimate until the decoder has finished.
        if job.report is not None:
            total = job.report.frame_count
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
            self._fail(job, f"cannot write results: {exc.strerror or exc} ({exc.filename or ''})".rstrip(" ()"))
            return
        except Exception as exc:
            self._fail(job, f"unexpected error while writing results: {type(exc).__name__}: {exc}")
            return
        job.finished = True
        self.succeeded += 1
        if self._first_result_after is None:
            self._first_result_after = time.perf_counter() - self._run_started

    def _fail(self, job: Job, cause: str) -> None:
        if job.finished:
            return
        self._announce(job)
        job.finished = True
        job.generation += 1  # its decoder, if still running, stops at its next chunk
        job.outputs.clear()
        self.failed += 1
        self.log.failed(job.index, len(self.jobs), job.name, cause)

    # -- results ---------------------------------------------------------------------
    def _write(self, job: Job) -> None:
        report = job.report
        n = report.frame_count
        ordered = [job.outputs[k] for k in range(job.windows_total)]
        single = win.assemble([o[0] for o in ordered], n)
        many = win.assemble([o[1] for o in ordered], n)
        found = scenes_mod.predictions_to_scenes(single, self.config.threshold)
        info = job.info
        fps = info.fps if info.fps > 0 else (n / report.timestamps[-1] if report.timestamps[-1] > 0 else 25.0)
        rows = scenes_mod.scene_rows(found, report.timestamps, fps)
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
                "decoded_span_s": report.timestamps[-1] + (1.0 / fps if fps > 0 else 0.0),
                "decode_errors": report.error_count,
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
            "torchscript": all(ts for _, _, ts in job.backends),
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
        if report.error_count:
            self.log.warning(f"{job.name}: {report.error_count} decoding error(s), concealed by the decoder "
                             f"(first: {report.error_messages[0] if report.error_messages else '?'})")
        self.log.success(job.index, len(self.jobs), job.name,
                         results.relative_name(job.paths.csv, self.root), len(found))


def run(config: Config, reporter: Reporter) -> int:
    return Engine(config, reporter).run()
