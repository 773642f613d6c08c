"""The driver's side of the model actors: windows from every video in flight
batched for whichever actor has room (the local engine's ModelFeed, with
actors instead of an inference thread), and their answers handed back.

``ModelPool`` stands where the local engine has its Predictor, for the
failure policy the Ray executor shares with it (executors/local.py).
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import numpy as np
import ray

from shots.batching import BATCHES_IN_FLIGHT, READY_WINDOWS_PER_BATCH, Window
from shots.executors import RunEvents
from shots.executors.ray_model import rebuild_error
from shots.video_job import VideoJob


@dataclass(eq=False)
class Actor:
    handle: object
    number: int
    batch: int = 1
    loaded: bool = False
    in_flight: int = 0
    restart_said: bool = False


def say(events: RunEvents, lines) -> None:
    for kind, args in lines:
        getattr(events, kind)(*args)


class ModelPool:
    """The model actors, seen as one predictor."""

    def __init__(self, handles: List[object], events: RunEvents, loading: Optional[dict] = None):
        self.actors = [Actor(h, i + 1) for i, h in enumerate(handles)]
        self.events = events
        by_handle = {id(a.handle): a for a in self.actors}
        # The actors' load() answers already asked for (ref -> actor).
        self.loading = {ref: by_handle[id(h)] for ref, h in (loading or {}).items()}
        self.device_type = "cpu"
        self.load_seconds = 0.0

    @property
    def loaded(self) -> List[Actor]:
        return [a for a in self.actors if a.loaded]

    @property
    def batch_size(self) -> int:
        return max([a.batch for a in self.loaded] or [1])

    def gpu_healthy(self) -> bool:
        return all(ray.get([a.handle.gpu_healthy.remote() for a in self.loaded]))

    def use_cpu(self, why: str) -> None:
        answers = ray.get([a.handle.use_cpu.remote(why) for a in self.loaded])
        if answers:
            say(self.events, answers[0])
        self.device_type = "cpu"


class RayModelFeed:
    """The interface of batching.ModelFeed: ``on_loaded(error or None)``,
    ``on_predicted(jobs)``, ``on_failed(jobs, error)``."""

    def __init__(self, pool: ModelPool, on_loaded: Callable, on_predicted: Callable, on_failed: Callable):
        self.pool = pool
        self.ready: List[Window] = []
        self.in_flight = 0
        self.model_ready = False
        self._on_loaded, self._on_predicted, self._on_failed = on_loaded, on_predicted, on_failed
        self._loading: Dict[object, Actor] = {}
        self._batches: Dict[object, tuple] = {}  # ref -> (windows, actor)

    def start(self) -> None:
        self._loading = self.pool.loading or {a.handle.load.remote(): a for a in self.pool.actors}

    def close(self) -> None:
        for ref in list(self._batches) + list(self._loading):
            try:
                ray.cancel(ref)
            except Exception:
                pass
        self._batches.clear()
        self._loading.clear()

    # -- the scheduler's side -----------------------------------------------------------
    @property
    def room(self) -> int:
        return READY_WINDOWS_PER_BATCH * self.pool.batch_size * max(1, len(self.pool.loaded)) - len(self.ready)

    @property
    def saturated(self) -> bool:
        actors = max(1, len(self.pool.loaded))
        return self.in_flight >= BATCHES_IN_FLIGHT * actors or (self.in_flight > 0 and self.room <= 0)

    def add(self, job: VideoJob, frames: List[np.ndarray]) -> None:
        first = job.windows_made - len(frames)
        self.ready += [Window(job, job.generation, first + i, f) for i, f in enumerate(frames)]

    def discard(self, job: VideoJob) -> None:
        self.ready = [w for w in self.ready if w.job is not job]

    def _on_cpu(self, window: Window) -> bool:
        return window.job.on_cpu or self.pool.device_type == "cpu"

    def send(self) -> None:
        """Batches to the actors with room; a partial batch only to an idle actor."""
        if not self.model_ready or not self.ready:
            return
        self.ready = [w for w in self.ready if w.live]
        for actor in sorted(self.pool.loaded, key=lambda a: a.in_flight):
            while self.ready and actor.in_flight < BATCHES_IN_FLIGHT:
                if actor.in_flight and len(self.ready) < actor.batch:
                    break
                on_cpu = self._on_cpu(self.ready[0])
                batch = [w for w in self.ready if self._on_cpu(w) == on_cpu][:actor.batch]
                taken = set(map(id, batch))
                self.ready = [w for w in self.ready if id(w) not in taken]
                ref = actor.handle.run.remote([w.frames for w in batch], on_cpu)
                self._batches[ref] = (batch, actor)
                actor.in_flight += 1
                self.in_flight += 1

    def collect(self, wait: float = 0.0) -> None:
        refs = list(self._loading) + list(self._batches)
        if not refs:
            return
        ready, rest = ray.wait(refs, num_returns=1, timeout=wait)
        if ready and rest:
            ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        for ref in ready:
            if ref in self._loading:
                self._loaded(self._loading.pop(ref), ref)
            else:
                self._batch_done(ref, *self._batches.pop(ref))

    # -- answers -------------------------------------------------------------------------
    def _loaded(self, actor: Actor, ref) -> None:
        try:
            answer = ray.get(ref)
        except ray.exceptions.RayError as exc:
            answer = ("other", type(exc).__name__, str(exc))
        if answer[0] is not None:
            error = rebuild_error(*answer)
            if self.model_ready:  # the others go on without it
                self.pool.events.warning(f"model actor {actor.number} could not load the model: {error}")
            elif answer[0] == "setup" or not self._loading:  # else: wait for the others
                self._on_loaded(error)
            return
        _, actor.batch, device_type, seconds, lines = answer
        actor.loaded = True
        if self.model_ready:
            self.pool.events.info(f"model actor {actor.number} ready ({device_type}, batch {actor.batch})")
            return
        say(self.pool.events, lines)
        self.pool.device_type, self.pool.load_seconds = device_type, seconds
        self.model_ready = True
        self._on_loaded(None)

    def _batch_done(self, ref, batch: List[Window], actor: Actor) -> None:
        self.in_flight -= 1
        actor.in_flight -= 1
        live = [(i, w) for i, w in enumerate(batch) if w.live]
        jobs = list({id(w.job): w.job for _, w in live}.values())
        try:
            answer = ray.get(ref)
        except ray.exceptions.RayError as exc:  # the actor is gone for good (restarts used up)
            error = type(type(exc).__name__, (Exception,), {})(_first_line(exc))
            if isinstance(exc, ray.exceptions.RayActorError):
                actor.loaded = False
                if not self.pool.loaded:  # no model left: the run ends, as when none could load
                    self.model_ready = False
                    self._on_loaded(error)
                    return
            self._on_failed(jobs, error)
            return
        if len(answer) == 3:
            self._on_failed(jobs, rebuild_error(*answer))
            return
        probs, ran_on, seconds, lines, restarted = answer
        say(self.pool.events, lines)
        if restarted and not actor.restart_said:
            actor.restart_said = True
            self.pool.events.warning(f"model actor {actor.number} was restarted (its process ended): "
                                     f"its batches were redone")
        share = seconds / max(1, len(batch))
        for i, w in live:
            w.job.predicted(w.number, probs[i], share, ran_on)
        self._on_predicted(jobs)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
