"""Windows into batches for the model, and the inference thread that runs them.

The thread is the only one that touches the model: it first builds and warms
it up (the decoders start on the first videos meanwhile), then runs the
batches while the scheduler's thread prepares the next ones. Windows come
from every video in flight, so a slow or long video holds no other back.
"""
import contextlib
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np

from shots.video_job import VideoJob
from shots.windows import stack

READY_WINDOWS_PER_BATCH = 4  # windows cut ahead of the model, in batches
BATCHES_IN_FLIGHT = 2        # one running, one waiting: the model never idles


@dataclass
class _Loaded:
    """Inference thread -> scheduler: the model is set up (``error`` None) or cannot be."""
    error: Optional[BaseException]


@dataclass
class _BatchDone:
    """Inference thread -> scheduler: a batch's probabilities, or what it raised."""
    batch: List["Window"]
    probs: Optional[np.ndarray] = None
    backend: object = None
    error: Optional[BaseException] = None
    seconds: float = 0.0


@dataclass
class Window:
    job: VideoJob
    generation: int
    number: int
    frames: np.ndarray

    @property
    def live(self) -> bool:
        return self.generation == self.job.generation and not self.job.finished


class ModelFeed:
    """``on_loaded(error or None)`` once the model is set up;
    ``on_predicted(jobs)`` after a batch's outputs reached their jobs;
    ``on_failed(jobs, error)`` when a batch raised."""

    def __init__(self, predictor, on_loaded: Callable, on_predicted: Callable, on_failed: Callable):
        self.predictor = predictor
        self.ready: List[Window] = []
        self.in_flight = 0
        self.model_ready = False
        self._on_loaded, self._on_predicted, self._on_failed = on_loaded, on_predicted, on_failed
        self._batches: "queue.Queue" = queue.Queue()
        self._results: "queue.Queue" = queue.Queue()
        self._thread = threading.Thread(target=self._inference_loop, name="inference", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._batches.put(None)
        self._thread.join(timeout=60)

    # -- the scheduler's side -----------------------------------------------------------
    @property
    def room(self) -> int:
        """Windows that may still be cut ahead of the model."""
        return READY_WINDOWS_PER_BATCH * self.predictor.batch_size - len(self.ready)

    @property
    def saturated(self) -> bool:
        """The model has all it can take: the scheduler may sleep on its results."""
        return self.in_flight >= BATCHES_IN_FLIGHT or (self.in_flight > 0 and self.room <= 0)

    def add(self, job: VideoJob, frames: List[np.ndarray]) -> None:
        first = job.windows_made - len(frames)
        self.ready += [Window(job, job.generation, first + i, f) for i, f in enumerate(frames)]

    def discard(self, job: VideoJob) -> None:
        self.ready = [w for w in self.ready if w.job is not job]

    def _on_cpu(self, window: Window) -> bool:
        return window.job.on_cpu or self.predictor.device_type == "cpu"

    def send(self) -> None:
        """Keep the model busy: a partial batch only when it would otherwise idle."""
        if not self.model_ready or self.in_flight >= BATCHES_IN_FLIGHT or not self.ready:
            return  # most turns of the scheduler's loop: nothing to look at
        # A failed or restarted video's windows are discarded at once; this only
        # guards against one that slipped through.
        self.ready = [w for w in self.ready if w.live]
        size = self.predictor.batch_size
        while self.ready and self.in_flight < BATCHES_IN_FLIGHT:
            if self.in_flight == 1 and len(self.ready) < size:
                return
            on_cpu = self._on_cpu(self.ready[0])
            batch = [w for w in self.ready if self._on_cpu(w) == on_cpu][:size]
            taken = set(map(id, batch))
            self.ready = [w for w in self.ready if id(w) not in taken]
            self.in_flight += 1
            self._batches.put((batch, on_cpu))

    def collect(self, wait: float = 0.0) -> None:
        """Hand what the inference thread finished to the callbacks."""
        while True:
            try:
                item = self._results.get(timeout=wait) if wait else self._results.get_nowait()
            except queue.Empty:
                return
            wait = 0.0
            if isinstance(item, _Loaded):
                self.model_ready = item.error is None
                self._on_loaded(item.error)
            else:
                self._batch_done(item)

    def _batch_done(self, done: _BatchDone) -> None:
        self.in_flight -= 1
        live = [(i, w) for i, w in enumerate(done.batch) if w.live]
        jobs = list({id(w.job): w.job for _, w in live}.values())
        if done.error is not None:
            self._on_failed(jobs, done.error)
            return
        share = done.seconds / max(1, len(done.batch))
        backend = done.backend
        ran_on = (str(backend.device), backend.precision, backend.kind)
        for i, w in live:
            w.job.predicted(w.number, done.probs[i], share, ran_on)
        self._on_predicted(jobs)

    # -- the inference thread -------------------------------------------------------------
    def _inference_loop(self) -> None:
        try:
            self.predictor.load()
        except BaseException as exc:  # the scheduler's thread reports it and ends the run
            self._results.put(_Loaded(exc))
            return
        self._results.put(_Loaded(None))
        with self._own_stream():
            self._run_batches()

    def _own_stream(self):
        """On a GPU, the model's work on a stream of its own: on the legacy
        default stream it would wait for, and hold up, the NVDEC threads'
        copies (frames/nvdec_source.py)."""
        if self.predictor.device_type != "cuda":
            return contextlib.nullcontext()
        import torch
        # High priority: from another pool than the NVDEC sessions' streams, never shared with one.
        return torch.cuda.stream(torch.cuda.Stream(priority=-1))

    def _run_batches(self) -> None:
        while True:
            item = self._batches.get()
            if item is None:
                return
            batch, on_cpu = item
            started = time.perf_counter()
            try:
                probs, backend = self.predictor.run(stack([w.frames for w in batch], on_cpu), on_cpu=on_cpu)
                self._results.put(_BatchDone(batch, probs, backend, seconds=time.perf_counter() - started))
            except BaseException as exc:  # handed to the scheduler's thread, which decides
                self._results.put(_BatchDone(batch, error=exc))
