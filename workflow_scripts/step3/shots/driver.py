"""STEP3's driver: one ``run(config, report)`` call is one batch of videos.

It plans the run (shots/plan.py), hands the videos to an executor
(shots/executors/), and is the only one that prints progress lines and
writes result files: it turns the executor's events into the lines of
docs/progress-protocol.md and each finished prediction into its results
(shots/result_writer.py).
"""
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from shots import plan
from shots.config import Config
from shots.executors import Executor, SetupFailed
from shots.report import Reporter
from shots.result_writer import write_result
from shots.video_job import VideoJob, VideoPrediction
from stepkit.scene_results import (describe_write_error, name_problem, remove_stale_results,
                                   remove_stale_temporaries, sha256_file)
from stepkit.videos import FolderError, relative_name

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass
class Tally:
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0


class Driver:
    def __init__(self, config: Config, report: Reporter, executor: Optional[Executor] = None):
        self.config = config
        self.report = report
        self.root = Path(config.input_dir)
        self.executor = executor
        self.jobs: List[VideoJob] = []
        self.tally = Tally()
        self.model: dict = {}
        self._started: Dict[VideoJob, float] = {}  # when each video's decoding started
        self._run_started = time.perf_counter()
        self._first_result_after: Optional[float] = None

    def run(self) -> int:
        self.report.config(self.config.to_json())
        if not self.root.exists():
            self.report.error(f"input folder not found: {self.root}")
            return EXIT_USAGE
        try:
            self.jobs = plan.plan_jobs(self.config, self.root, self._unreadable_folder)
        except (FolderError, plan.SelectionError) as exc:
            self.report.error(str(exc))
            return EXIT_USAGE
        n = len(self.jobs)
        self.report.total(n)
        todo, done = plan.split_done(self.jobs, self.config)
        if self.config.dry_run:
            plan.dry_run(self.report, self.jobs, done, self.root)
            return EXIT_OK
        for job in done:
            self.report.processing(job.index, n, job.name)
            self.report.skipped(job.index, n, job.name, plan.ALREADY_DONE)
            self.tally.skipped += 1
        code = self._analyse(todo) if todo else None
        if code is not None:  # no model: nothing could be analysed
            self.tally.failed = len(todo)
        t = self.tally
        self.report.summary(t.succeeded, n, t.failed, t.skipped)
        if code is not None:
            return code
        if self._first_result_after is not None:
            self.report.info(f"first result after {self._first_result_after:.1f} s; "
                             f"run took {time.perf_counter() - self._run_started:.1f} s")
        return EXIT_FAILED if self.tally.failed else EXIT_OK

    def _unreadable_folder(self, folder: Path, cause: str) -> None:
        self.report.warning(f"{relative_name(folder, self.root)}: folder skipped, cannot read it: {cause}")

    def _analyse(self, todo: List[VideoJob]) -> Optional[int]:
        """Every video of ``todo`` analysed; an exit code if the model could not
        be set up (then nothing was written)."""
        removed = remove_stale_temporaries({job.path.parent for job in todo})
        if removed:
            self.report.info(f"removed {len(removed)} temporary file(s) left by an interrupted run")
        try:
            weights = self._weights()
            executor = self.executor or self._local_executor(weights)
        except SetupFailed as exc:
            self.report.error(str(exc))
            return EXIT_USAGE
        try:
            executor.prepare(self)
            self.model = {"name": "TransNetV2", "weights_file": weights.name,
                          "weights_sha256": sha256_file(weights)}
            runnable = []
            for job in todo:
                problem = name_problem(job.paths)
                if problem:
                    self.failed(job, problem)
                else:
                    runnable.append(job)
            executor.run(runnable, self)
        except SetupFailed as exc:
            self.report.error(str(exc))
            return EXIT_USAGE
        finally:
            executor.close()  # the GPU's lock goes with the run, not with the process
        return None

    def _weights(self) -> Path:
        if self.config.weights_path:
            return Path(self.config.weights_path)
        from shots.model.weights import AssetError, default_weights_path
        try:
            return default_weights_path()
        except AssetError as exc:
            raise SetupFailed(f"cannot find the model weights: {exc}") from None

    def _local_executor(self, weights: Path) -> Executor:
        if self.config.executor == "ray":
            if self.config.decoder == "nvdec":
                self.report.warning("decoder 'nvdec': the ray executor decodes with ffmpeg on the CPU")
            from shots.executors.ray_executor import RayExecutor
            return RayExecutor(self.config, weights)
        from shots.executors.local import LocalExecutor
        return LocalExecutor(self.config, weights)

    # -- the executor's events (RunEvents) ------------------------------------------------
    def started(self, job: VideoJob) -> None:
        if job not in self._started:
            self._started[job] = time.perf_counter()
            self.report.processing(job.index, len(self.jobs), job.name)

    def frames(self, job: VideoJob, done: int, total: int) -> None:
        self.report.frames(job.index, len(self.jobs), done, total)

    def finished(self, job: VideoJob, prediction: VideoPrediction) -> None:
        n = len(self.jobs)
        frames = len(prediction.timestamps)
        self.report.frames(job.index, n, frames, frames, final=True)
        started = self._started.get(job)
        try:
            count = write_result(job, prediction, self.config.threshold, self.model,
                                 None if started is None else time.perf_counter() - started)
        except OSError as exc:
            self.failed(job, describe_write_error(exc))
            return
        except Exception as exc:
            self.failed(job, f"unexpected error while writing results: {type(exc).__name__}: {exc}")
            return
        if prediction.decode_errors:
            first = prediction.decode_messages[0] if prediction.decode_messages else "?"
            self.report.warning(f"{job.name}: {prediction.decode_errors} decoding error(s), concealed by the "
                                f"decoder (first: {first})")
        self.report.success(job.index, n, job.name, relative_name(job.paths.csv, self.root), count)
        self.tally.succeeded += 1
        if self._first_result_after is None:
            self._first_result_after = time.perf_counter() - self._run_started

    def failed(self, job: VideoJob, cause: str) -> None:
        self.started(job)
        self.tally.failed += 1
        self.report.failed(job.index, len(self.jobs), job.name, cause)
        removed = remove_stale_results(job.path, job.paths)
        if removed:
            self.report.warning(f"{job.name}: removed the results of an earlier version of this video "
                                f"({', '.join(p.name for p in removed)}): they no longer describe it")

    def warning(self, text: str) -> None:
        self.report.warning(text)

    def info(self, text: str) -> None:
        self.report.info(text)

    def device(self, device: str, why: str) -> None:
        self.report.device(device, why)


def run(config: Config, report: Reporter) -> int:
    return Driver(config, report).run()
