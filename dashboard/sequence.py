""""Run all": the steps in their configured order, driven by a server thread.

The sequence lives in the server, not in the browser: closing the page does not
stop it. It stops at the first step that does not succeed. A step whose
resource is busy (another step holds the GPU) is waited for, not refused.
"""
import threading
import time

from .bus import EventBus
from .outcome import sequence_outcome
from .history import RunStore
from .registry import Registry
from .runner import Busy, LaunchError, NotReady, NotRunning, Runner, Stopping
from .status import (REASON_CANCELLED, REASON_INTERRUPTED, RunStatus, SequenceStatus, all_steps_succeeded,
                     internal_error, sequence_stopped)

TOPIC = "sequence"


class SequenceBusy(Exception):
    pass


class Sequence:
    def __init__(self, seq_id: int, steps: list[str], started_at: float):
        self.id = seq_id
        self.steps = steps
        self.started_at = started_at
        self.ended_at: float | None = None
        self.status = SequenceStatus.RUNNING
        self.reason: str | None = None  # the raw reason, as the history records it
        self.outcome: str | None = None  # how it ended, in words (outcome.sequence_outcome)
        # Where it stopped: the step's name, its run's sentence, or why it could not start.
        self.stopped_at: str | None = None
        self.step_outcome: str | None = None
        self.cause: str | None = None
        self.current: str | None = None
        self.waiting: str | None = None
        self.runs: dict[str, int] = {}
        self.cancel_requested = False
        self.lock = threading.Lock()
        self.done = threading.Event()

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "id": self.id,
                "status": self.status.value,
                "steps": list(self.steps),
                "current_step": self.current,
                "waiting": self.waiting,
                "runs": dict(self.runs),
                "started_at": self.started_at,
                "ended_at": self.ended_at,
                "reason": self.reason,
                "outcome": self.outcome,
            }


class SequenceRunner:
    def __init__(self, registry: Registry, runner: Runner, store: RunStore, bus: EventBus, logger):
        self.registry = registry
        self.runner = runner
        self.store = store
        self.bus = bus
        self.log = logger
        self._lock = threading.Lock()
        self._current: Sequence | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def steps(self) -> list[str]:
        return [s.id for s in self.registry.steps if s.run_all]

    def problem(self) -> NotReady | None:
        """Why "Run all" cannot start now: its first step that cannot (a missing
        venv, a missing projects folder...), which would stop it anyway."""
        for step_id in self.steps():
            step = self.registry.get(step_id)
            problems, fix = self.runner.readiness(step)
            if problems:
                return NotReady(f"{step.name} cannot start: {problems[0]}", problems, fix)
        return None

    def current(self) -> Sequence | None:
        with self._lock:
            return self._current

    def start(self) -> Sequence:
        steps = self.steps()
        if not steps:
            raise LaunchError("no step takes part in \"Run all\"")
        refusal = self.problem()
        if refusal is not None:
            raise refusal
        with self._lock:
            if self._closed:
                raise Stopping()
            if self._current and self._current.status is SequenceStatus.RUNNING:
                raise SequenceBusy(f"\"Run all\" is already running (sequence {self._current.id})")
            started = time.time()
            seq = Sequence(self.store.create_sequence(steps, started), steps, started)
            self._current = seq
            self._thread = threading.Thread(target=self._drive, args=(seq,), name=f"sequence-{seq.id}", daemon=True)
            self._thread.start()
        self.log.info("run all %s started: %s", seq.id, ", ".join(steps))
        self.bus.publish(TOPIC)
        return seq

    def cancel(self) -> Sequence | None:
        seq = self.current()
        if seq is None or seq.status is not SequenceStatus.RUNNING:
            return None
        with seq.lock:
            seq.cancel_requested = True
            step = seq.current
            run_id = seq.runs.get(step) if step else None
        if run_id is not None:
            self._cancel_run(step, run_id)
        with self.runner.changed:
            self.runner.changed.notify_all()
        return seq

    def _cancel_run(self, step_id: str, run_id: int) -> None:
        active = self.runner.active(step_id)
        if active is not None and active.id == run_id:
            try:
                self.runner.cancel(step_id)
            except NotRunning:
                pass

    def _drive(self, seq: Sequence) -> None:
        try:
            status, reason = self._run_steps(seq)
        except Exception as exc:  # never leave a sequence marked running
            self.log.exception("run all %s failed", seq.id)
            status, reason = SequenceStatus.FAILED, internal_error(exc)
        with seq.lock:
            seq.status, seq.reason, seq.ended_at = status, reason, time.time()
            later = seq.stopped_at is not None and seq.current != seq.steps[-1]
            seq.outcome = sequence_outcome(status.value, len(seq.steps), seq.stopped_at, seq.step_outcome,
                                           seq.cause, later)
            seq.current = seq.waiting = None
        self.store.finish_sequence(seq.id, status, seq.ended_at, reason)
        self.log.info("run all %s ended: %s (%s)", seq.id, status.value, reason)
        seq.done.set()
        self.bus.publish(TOPIC)

    def _run_steps(self, seq: Sequence) -> tuple[SequenceStatus, str]:
        for step_id in seq.steps:
            step = self.registry.get(step_id)
            with seq.lock:
                seq.current = step_id
            self.bus.publish(TOPIC)
            run = self._launch_when_free(seq, step_id)
            with seq.lock:
                seq.stopped_at = step.name  # until the step succeeds
            if run is None:
                if self._closed:
                    return SequenceStatus.INTERRUPTED, REASON_INTERRUPTED
                return SequenceStatus.CANCELLED, REASON_CANCELLED
            if isinstance(run, str):
                with seq.lock:
                    seq.cause = run
                return SequenceStatus.FAILED, run
            with seq.lock:
                seq.runs[step_id] = run.id
                cancel = seq.cancel_requested
            if cancel:
                self._cancel_run(step_id, run.id)
            self.bus.publish(TOPIC)
            run.done.wait()
            if run.status is not RunStatus.SUCCEEDED:
                with seq.lock:
                    seq.step_outcome = run.snapshot()["outcome"]
                return sequence_stopped(step.name, run.status, run.reason)
            with seq.lock:
                seq.stopped_at = None
        return SequenceStatus.SUCCEEDED, all_steps_succeeded(len(seq.steps))

    def _launch_when_free(self, seq: Sequence, step_id: str):
        """The run, None if cancelled while waiting, or a text saying why it cannot start."""
        while True:
            with seq.lock:
                if seq.cancel_requested or self._closed:
                    return None
            try:
                run = self.runner.launch(step_id, trigger="run-all", sequence_id=seq.id)
            except Busy as exc:
                message = f"waiting: {exc}"
                with seq.lock:
                    changed = seq.waiting != message
                    seq.waiting = message
                if changed:
                    self.bus.publish(TOPIC)
                with self.runner.changed:
                    self.runner.changed.wait(0.5)
                continue
            except LaunchError as exc:
                return str(exc)
            with seq.lock:
                seq.waiting = None
            return run

    def shutdown(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
        with self.runner.changed:
            self.runner.changed.notify_all()
        if thread:
            thread.join(timeout)
