"""Starts steps as subprocesses, follows their output, cancels them.

No web framework here: the runner is driven by plain method calls (the API,
the "Run all" sequence, the tests, the benchmark) and reports changes through
an EventBus.

The runner keeps the table of running steps (one run per step, one step per
resource) and decides what may start; the pieces of a run live beside it:
launcher.py starts the child, follower.py is the thread that follows it until
it has ended, run.py holds its state, run_record.py keeps its history row.
"""
import logging
import sqlite3
import threading
import time
from pathlib import Path

from . import options as run_options
from . import procs
from .bus import EventBus, topic_of
from .follower import Follower
from .history import RunStore
from .launcher import RUN_TAG_ENV, Launcher, StartFailed
from .projects import folder_problem
from .registry import Registry, Step
from .run import Run
from .run_log import DASHBOARD_PREFIX, append_note, end_in_log, log_rel_of
from .run_record import RunRecord
from .status import REASON_CANCELLED, REASON_INTERRUPTED, RunStatus, could_not_start

__all__ = [
    "Runner", "Run", "RunStatus", "LaunchError", "UnknownStep", "Busy", "NotReady", "NotRunning", "Stopping",
    "topic_of", "DASHBOARD_PREFIX", "REASON_CANCELLED", "REASON_INTERRUPTED",
]


class LaunchError(Exception):
    """A step could not be started; the message is for the user."""


class UnknownStep(LaunchError):
    pass


class Busy(LaunchError):
    def __init__(self, message: str, run_id: int | None = None):
        super().__init__(message)
        self.run_id = run_id


class NotReady(LaunchError):
    def __init__(self, message: str, problems: list[str], fix: str | None):
        super().__init__(message)
        self.problems = problems
        self.fix = fix


UNRECORDED_IDS = 10**12  # ids of runs a damaged history could not record start above this


class HistoryUnavailable(LaunchError):
    """The history cannot record a new run (damaged, locked, full disk)."""


class Stopping(LaunchError):
    def __init__(self):
        super().__init__("the dashboard is stopping")


class NotRunning(Exception):
    pass


class Runner:
    def __init__(self, registry: Registry, store: RunStore, logs_dir: Path, projects_dir: Path,
                 bus: EventBus | None = None, logger: logging.Logger | None = None,
                 checkpoint_s: float = 2.0):
        self.registry = registry
        self.store = store
        self.logs_dir = Path(logs_dir)
        self.projects_dir = Path(projects_dir)
        self.bus = bus or EventBus()
        self.log = logger or logging.getLogger("dashboard.runner")
        self.checkpoint_s = checkpoint_s
        self.launcher = Launcher(registry, store, self.logs_dir, self.projects_dir, self.log)
        self.record = RunRecord(store, self.log)
        self._lock = threading.Lock()
        self._active: dict[str, Run] = {}
        self._latest: dict[str, Run] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._closed = False
        self.orphans = None  # orphans.Orphans when the server is a subreaper (app.py)
        # Notified whenever a run ends, for whoever waits on a resource.
        self.changed = threading.Condition()
        # A run's start or end changes the cards of the steps sharing a resource with it ("blocked").
        self._neighbours = {
            s.id: [o.id for o in registry.steps if o.id != s.id and set(o.resources) & set(s.resources)]
            for s in registry.steps
        }

    # ---- queries -----------------------------------------------------------

    def active(self, step_id: str) -> Run | None:
        with self._lock:
            return self._active.get(step_id)

    def latest(self, step_id: str) -> Run | None:
        with self._lock:
            return self._active.get(step_id) or self._latest.get(step_id)

    def get(self, run_id: int) -> Run | None:
        with self._lock:
            for run in (*self._active.values(), *self._latest.values()):
                if run.id == run_id:
                    return run
        return None

    def active_runs(self) -> list[Run]:
        with self._lock:
            return list(self._active.values())

    def readiness(self, step: Step) -> tuple[list[str], str | None]:
        """What keeps ``step`` from starting now (its entry, venv and script, and
        the projects folder if it is given it) and the command that fixes it."""
        problems, fix = self.registry.readiness(step)
        if step.uses_projects_dir:
            found = folder_problem(self.projects_dir)
            if found:
                problems, fix = problems + [found[0]], fix or found[1]
        return problems, fix

    def blocker(self, step: Step) -> str | None:
        """Why ``step`` cannot start right now, or None."""
        with self._lock:
            return self._blocker_locked(step)

    def _blocker_locked(self, step: Step) -> str | None:
        run = self._active.get(step.id)
        if run:
            return f"{step.name} is already running (run {run.id})"
        for resource in step.resources:
            for other in self._active.values():
                if resource in other.step.resources:
                    return f"resource {resource!r} is in use by {other.step.name} (run {other.id})"
        return None

    def _holder_locked(self, step: Step) -> Run | None:
        """The run that keeps ``step`` from starting: its own, or one holding a resource it needs."""
        holder = self._active.get(step.id)
        if holder is None:
            holder = next((r for r in self._active.values() if set(r.step.resources) & set(step.resources)), None)
        return holder

    # ---- launch ------------------------------------------------------------

    def launch(self, step_id: str, trigger: str = "user", sequence_id: int | None = None,
               options: dict | None = None) -> Run:
        """Start a run with ``options`` (name -> value; the others their defaults).
        Raises options.OptionError, before anything runs, for a value that is refused."""
        step = self.registry.get(step_id)
        if step is None:
            raise UnknownStep(f"no step {step_id!r}")
        chosen = run_options.resolve(step.options, options, self.projects_dir)
        problems, fix = self.readiness(step)
        if problems:
            raise NotReady(f"{step.name} cannot start: {problems[0]}", problems, fix)
        # Check and register under one lock: two launches at the same instant
        # give one run and one refusal.
        with self._lock:
            if self._closed:
                raise Stopping()
            blocker = self._blocker_locked(step)
            if blocker:
                holder = self._holder_locked(step)
                raise Busy(blocker, holder.id if holder else None)
            run = self._start(step, trigger, sequence_id, chosen)
            if run.status is RunStatus.RUNNING:
                self._active[step.id] = run
            else:
                self._latest[step.id] = run
        self._publish_around(step.id)
        if run.status.finished:
            self._notify_ended(run)
        return run

    def _publish_around(self, step_id: str) -> None:
        self.bus.publish(topic_of(step_id))
        for other in self._neighbours.get(step_id, ()):
            self.bus.publish(topic_of(other))

    def _start(self, step: Step, trigger: str, sequence_id, options: dict) -> Run:
        started = time.time()
        folder = str(self.projects_dir)
        try:
            run_id = self.store.create(step.id, started, trigger, sequence_id, projects_dir=folder, options=options)
        except sqlite3.OperationalError as exc:
            # Locked by another program, a full disk: no row, so no phantom "running"
            # run; the user is told, nothing starts.
            self.log.error("%s not started: the history cannot record a new run: %s", step.id, exc)
            raise HistoryUnavailable(f"{step.name} was not started: the history database cannot record a new "
                                     f"run now ({exc}); see app.log") from None
        except sqlite3.DatabaseError as exc:
            # A damaged file: the step still runs (shown live, with its log); the history misses it.
            run_id = self._unrecorded_id()
            self.log.error("run %s of %s is not in the history, whose file is damaged: %s", run_id, step.id, exc)
        run = Run(run_id, step, started, trigger, sequence_id, log_rel_of(step.id, run_id, started), folder,
                  options)
        try:
            proc, log = self.launcher.start(run)
        except Exception as exc:  # a full disk, a broken venv...: the run failed, in words, never "running"
            reason = exc.reason if isinstance(exc, StartFailed) else could_not_start(
                getattr(exc, "strerror", None) or f"{type(exc).__name__}: {exc}")
            self.record.end(run, RunStatus.FAILED, None, reason)
            self.log.error("run %s of %s %s", run_id, step.id, reason)
            return run
        follower = Follower(run, proc, log, self.record, self.bus, self.log, self.checkpoint_s, self._end,
                            adopted=(lambda: self._adopted_by(run)) if self.orphans is not None else None)
        thread = threading.Thread(target=follower.follow, name=f"run-{run_id}", daemon=True)
        self._threads[run_id] = thread
        thread.start()
        return run

    def _unrecorded_id(self) -> int:
        """An id for a run the damaged history could not record, above any it holds."""
        self._unrecorded = getattr(self, "_unrecorded", UNRECORDED_IDS) + 1
        return self._unrecorded

    def step_pids(self) -> list[int]:
        """The main processes of the running steps (the children the runner started)."""
        with self._lock:
            return [r.pid for r in self._active.values() if r.pid]

    def _adopted_by(self, run: Run) -> list:
        """The orphans the server was given, as ``run``'s: only when no other run
        is going, which could have left them (then the next end looks again)."""
        with self._lock:
            alone = all(other is run for other in self._active.values())
        return self.orphans.living() if alone else []

    # ---- cancel ------------------------------------------------------------

    def cancel(self, step_id: str) -> Run:
        run = self.active(step_id)
        if run is None:
            raise NotRunning(f"{step_id} is not running")
        self._signal_stop(run, interrupt=False)
        return run

    def _signal_stop(self, run: Run, interrupt: bool) -> None:
        if not run.request_stop(interrupt):
            return
        self.log.info("run %s of %s: %s, SIGTERM sent to process group %s",
                      run.id, run.step.id, "server stopping" if interrupt else "cancel requested", run.pid)
        self.bus.publish(topic_of(run.step.id))

    # ---- the end of a run --------------------------------------------------

    def _end(self, run: Run, status: RunStatus, returncode: int | None, reason: str) -> None:
        # The status and the table of active runs change together: whoever sees the
        # run ended also finds its step and its resources free.
        with self._lock:
            fields = run.finish(status, returncode, reason)
            if self._active.get(run.step.id) is run:
                del self._active[run.step.id]
            self._latest[run.step.id] = run
            self._threads.pop(run.id, None)
        self._publish_around(run.step.id)  # the pages show the live state at once
        # Outside the lock: a database held by another program must not stall the
        # pages (it waits up to its busy timeout, then retries in the background).
        # Those who wait on the run hear of its end once it is recorded or queued.
        self.record.save_end(run, fields)
        self._notify_ended(run)

    def _notify_ended(self, run: Run) -> None:
        run.done.set()
        with self.changed:
            self.changed.notify_all()

    # ---- start-up and shut-down -------------------------------------------

    def recover(self, grace: float = 3.0) -> list[int]:
        """Runs a previous server left marked running: end their groups, mark them interrupted."""
        recovered = []
        for row in self.store.with_status(RunStatus.RUNNING.value):
            ended = 0
            if row.get("pid"):
                ended = procs.end_stale_group(row["pid"], row.get("pid_started_at"), grace)
            ended += procs.end_tracked(row.get("tracking"), RUN_TAG_ENV, grace)
            when = row.get("updated_at") or row["started_at"]
            logged = end_in_log(self.logs_dir, row.get("log_path"))
            if logged and logged[0] in {s.value for s in RunStatus} and logged[0] != RunStatus.RUNNING.value:
                # It ended, but the history could not take its end: the log kept it.
                self.store.update(row["id"], status=logged[0], reason=logged[1], ended_at=when)
                self.log.warning("run %s of %s: its end (%s), missing from the history, was read from its log",
                                 row["id"], row["step_id"], logged[0])
                recovered.append(row["id"])
                continue
            self.store.update(row["id"], status=RunStatus.INTERRUPTED.value, reason=REASON_INTERRUPTED, ended_at=when)
            note = f"; ended {ended} process(es) it left running" if ended else ""
            self.log.warning("run %s of %s was still marked running: marked interrupted%s", row["id"], row["step_id"], note)
            try:
                append_note(self.logs_dir, row.get("log_path"),
                            f"ended: {RunStatus.INTERRUPTED.value} ({REASON_INTERRUPTED}){note}")
            except OSError as exc:
                self.log.warning("run %s: cannot add its end to its log: %s", row["id"], exc.strerror or exc)
            recovered.append(row["id"])
        return recovered

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop accepting launches, end every running step, wait for their threads."""
        with self._lock:
            self._closed = True
            runs = list(self._active.values())
            threads = list(self._threads.values())
        for run in runs:
            self._signal_stop(run, interrupt=True)
        if timeout is None:
            timeout = max((r.step.cancel_grace_s for r in runs), default=0) + 3
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.record.close()
