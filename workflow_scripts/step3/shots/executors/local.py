"""The local executor: decoder processes (the ffmpeg frame source) feed one
inference thread on this machine.

A failure stays with its video: a bad file or a decoder error fails that
video and the batch goes on; a segment that doesn't decode as planned redoes
its video in one piece; a CUDA failure redoes the videos concerned on the
CPU (all the remaining ones if the GPU is gone).
"""
from pathlib import Path
from typing import Callable, List, Optional

from shots.batching import ModelFeed
from shots.config import AUTO, Config
from shots.executors import Executor, RunEvents, SetupFailed
from shots.frames.ffmpeg_source import RING_FRAMES, FfmpegFrameSource, cpu_count, decoder_processes
from shots.frames.probe import DecodeError
from shots.frames.source import FrameSource
from shots.scheduler import READAHEAD_FRAMES_PER_DECODER, DecodeScheduler
from shots.video_job import SegmentMismatch, VideoJob


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else ""


def ffmpeg_source(decoders: int, config: Config) -> FrameSource:
    """The CPU's frame source: ``decoders`` ffmpeg decoder processes."""
    return FfmpegFrameSource(decoders, RING_FRAMES,
                             None if config.decoder_threads == AUTO else int(config.decoder_threads),
                             config.segment_seconds, config.segment_frames)


def frame_source(decoders: int, config: Config, model_device: str = "cpu",
                 say: Callable[[str, str], None] = lambda level, text: None) -> FrameSource:
    """The frame source the ``decoder`` option asks for: ``cpu``, the ffmpeg
    decoders; ``nvdec`` and ``auto``, NVDEC beside them where the model runs
    on an NVIDIA GPU and PyNvVideoCodec loads, else the ffmpeg decoders (with
    a warning for ``nvdec``; ``auto`` just says so where a GPU is used). On
    the H200 NVDEC ran full HD 2.2-2.5x and the mixed batch 1.07x as fast,
    with the same results (bench/RESULTS.md). ``say(level, line)`` tells why."""
    if config.decoder == "cpu" or (config.decoder == AUTO and model_device == "cpu"):
        return ffmpeg_source(decoders, config)
    from shots.frames.nvdec_source import NvdecFrameSource, NvdecUnavailable, load_library
    try:
        load_library()
        if model_device == "cpu":
            raise NvdecUnavailable("the model runs on the CPU")
        gpu = int(model_device.split(":")[1]) if ":" in model_device else 0
        nvdec = NvdecFrameSource(gpu=gpu)
    except NvdecUnavailable as exc:
        if config.decoder == AUTO:
            say("info", f"decoder auto: ffmpeg on the CPU ({exc})")
        else:
            say("warning", f"decoder 'nvdec': {exc}; decoding with ffmpeg on the CPU")
        return ffmpeg_source(decoders, config)
    from shots.frames.mixed_source import MixedFrameSource
    say("info", f"decoder {config.decoder}: NVDEC on {model_device} ({nvdec.capacity} sessions) beside "
                f"{decoders} ffmpeg decoder process(es)")
    return MixedFrameSource(nvdec, ffmpeg_source(decoders, config))


class LocalExecutor(Executor):
    """``make_source(decoders, config)`` builds the frame source (the seam
    of frames/source.py); by default the one the ``decoder`` option asks for."""

    def __init__(self, config: Config, weights_path: Path,
                 make_source: Optional[Callable[[int, Config], FrameSource]] = None):
        self.config = config
        self.weights_path = weights_path
        self.make_source = make_source
        self.predictor = None
        self.gpu_lock = None
        self.model_device = "cpu"

    def prepare(self, events: RunEvents) -> None:
        # Imported here so that a dry run or a run with nothing to do never loads torch.
        from shots.model.predictor import Predictor, WeightsError
        c = self.config
        self.predictor = Predictor(self.weights_path, c.device, c.mixed_precision, c.torchscript,
                                   c.torchscript_auto_fallback, c.batch_size, c.cpu_threads, events, c.cpu_fast)
        try:
            self.model_device = self.predictor.prepare()
        except WeightsError as exc:
            raise SetupFailed(str(exc)) from None
        if self.model_device.startswith("cuda"):  # one model per card across runs (device_lock.py)
            from shots.device_lock import gpu_lock_for
            self.gpu_lock = gpu_lock_for(self.model_device).acquire(events.info)

    def run(self, jobs: List[VideoJob], events: RunEvents) -> None:
        if self.predictor is None:
            self.prepare(events)
        _Run(self, jobs, events).go()

    def close(self) -> None:
        """The card is free for the next run (in this process too: a second
        run here would otherwise wait on our own lock forever), and the model
        goes with the run."""
        self.predictor = None
        lock, self.gpu_lock = self.gpu_lock, None
        if lock is not None:
            lock.release()


class _Run:
    """One call of LocalExecutor.run: the scheduler's loop and the failure policy."""

    def __init__(self, executor: LocalExecutor, jobs: List[VideoJob], events: RunEvents):
        self.config, self.predictor, self.events = executor.config, executor.predictor, events
        self.make_source = executor.make_source or self._configured_source
        self.model_device = executor.model_device
        self.jobs = jobs
        self.unfinished = len(jobs)
        self.setup_error: Optional[str] = None
        c = self.config
        self.decoders = decoder_processes(c.num_workers, executor.model_device)
        if c.num_workers == AUTO:
            events.info(f"{self.decoders} decoder process(es) (num_workers auto, {cpu_count()} cores, "
                        f"model on {executor.model_device})")
        self.readahead = (READAHEAD_FRAMES_PER_DECODER * self.decoders if c.readahead_frames == AUTO
                          else c.readahead_frames)
        self.feed = ModelFeed(self.predictor, self._loaded, self._predicted, self._batch_failed)
        self.scheduler: Optional[DecodeScheduler] = None

    def go(self) -> None:
        # The model loads in the inference thread while the decoders start on
        # the first videos (CUDA's start and the warm-up take seconds).
        self.feed.start()
        try:
            source = self.make_source(self.decoders, self.config)
            self.scheduler = DecodeScheduler(source, source.capacity, self.readahead, self._decode_failed,
                                             self.events.started, self._decode_on_cpu)
            for job in self.jobs:
                self.scheduler.plan(job)
            while self.unfinished and self.setup_error is None:
                self._turn()
        finally:
            self.feed.close()
            if self.scheduler is not None:
                self.scheduler.close()
        if self.setup_error is not None:
            raise SetupFailed(self.setup_error)

    def _configured_source(self, decoders: int, config: Config) -> FrameSource:
        say = lambda level, text: (self.events.warning if level == "warning" else self.events.info)(text)  # noqa
        return frame_source(decoders, config, self.model_device, say)

    def _turn(self) -> None:
        sched, feed = self.scheduler, self.feed
        sched.collect_plans()
        for note in getattr(sched.source, "take_notes", lambda: [])():
            self.events.info(note)
        sched.assign()
        if feed.saturated:
            # Sleep until the model hands a batch back (no busy loop beside a
            # CPU model that needs every core).
            feed.collect(wait=0.05)
            timeout = 0.0
        else:
            timeout = 0.002 if feed.model_ready and (feed.ready or feed.in_flight) else 0.05
        sched.receive(timeout)
        sched.read_ahead()
        for job in list(sched.active):
            self._read(job)
        feed.collect()
        feed.send()

    def _read(self, job: VideoJob) -> None:
        if job.finished:
            return
        try:
            windows = self.scheduler.read(job, self.feed.room)
        except SegmentMismatch as exc:
            self._decode_failed(job, str(exc), split=True)
            return
        except DecodeError as exc:
            self._fail(job, str(exc))
            return
        self.feed.add(job, windows)
        self._maybe_finish(job)

    # -- outcomes -----------------------------------------------------------------------
    def _maybe_finish(self, job: VideoJob) -> None:
        if job.finished or not job.complete:
            return
        self._done_with(job)
        prediction = job.prediction()
        prediction.model_load_seconds = self.predictor.load_seconds
        self.events.finished(job, prediction)

    def _fail(self, job: VideoJob, cause: str) -> None:
        if job.finished:
            return
        self._done_with(job)
        self.events.failed(job, cause)

    def _done_with(self, job: VideoJob) -> None:
        self.scheduler.forget(job)
        self.feed.discard(job)
        job.finished = True
        self.unfinished -= 1

    def _restart(self, job: VideoJob, whole: bool = False, on_cpu: bool = False) -> None:
        self.scheduler.forget(job)
        self.feed.discard(job)
        job.reset()
        job.allow_segments = job.allow_segments and not whole
        job.on_cpu = job.on_cpu or on_cpu
        self.scheduler.plan(job)

    def _decode_failed(self, job: VideoJob, cause: str, split: bool) -> None:
        if not split:
            self._fail(job, cause)
            return
        # Possibly the split's fault (an odd file's keyframes or timestamps):
        # one piece decides; a damaged file then fails with its own cause.
        self.events.warning(f"{job.name}: {cause}: decoding the video in one piece")
        self._restart(job, whole=True)

    def _decode_on_cpu(self, job: VideoJob, cause: str) -> None:
        """The GPU's decoder gave up on ``job``: ffmpeg decodes it again (the
        source no longer routes it to NVDEC)."""
        self.events.warning(f"{job.name}: {cause}: decoding it with ffmpeg on the CPU")
        self._restart(job)

    # -- the model's callbacks --------------------------------------------------------------
    def _loaded(self, error: Optional[BaseException]) -> None:
        from shots.model.predictor import SetupError, WeightsError
        if error is None:
            # A GPU that failed while loading leaves a CPU model: decoders as for one.
            extra = self.scheduler.source.capacity - self.decoders  # NVDEC's sessions
            self.scheduler.max_tasks = extra + min(self.decoders, decoder_processes(self.config.num_workers,
                                                                                    self.predictor.device_type))
        elif isinstance(error, (WeightsError, SetupError)):
            self.setup_error = str(error)
        else:
            self.setup_error = f"the model could not be loaded: {type(error).__name__}: {_first_line(error)}"

    def _predicted(self, jobs: List[VideoJob]) -> None:
        for job in jobs:
            self.events.frames(job, *job.frames_done())
            self._maybe_finish(job)

    def _batch_failed(self, jobs: List[VideoJob], error: BaseException) -> None:
        from shots.model.predictor import DeviceFailure
        if not isinstance(error, DeviceFailure):
            for job in jobs:
                self._fail(job, f"model failed: {type(error).__name__}: {_first_line(error)}")
            return
        cause = str(error)
        if not self.predictor.gpu_healthy():
            self.events.warning(f"the GPU is no longer usable ({cause}): every remaining video runs on the CPU")
            self.predictor.use_cpu("fallback: the GPU stopped working")
            jobs = jobs + [j for j in self.scheduler.active if not j.finished and not j.on_cpu and j not in jobs]
        for job in jobs:
            self.events.warning(f"{job.name}: CUDA failed ({cause}): redoing this video on the CPU")
            self._restart(job, on_cpu=True)
