"""Starts steps as subprocesses, follows their output, cancels them.

No web framework here: the runner is driven by plain method calls (the API,
the "Run all" sequence, the tests, the benchmark) and reports changes through
an EventBus.

Each run has one thread that reads the child's output, applies the step's
progress patterns, writes the run's log file, and ends the run. The child is
not reaped until its process group has been cleaned up, so that its pid, and
therefore its group id, cannot be reused by an unrelated process while the
runner may still signal that group.
"""
import collections
import fcntl
import logging
import os
import selectors
import signal
import sqlite3
import subprocess
import threading
import time
from datetime import datetime
from enum import Enum
from pathlib import Path

import psutil

from . import procs
from .bus import EventBus
from .history import RunStore
from .lines import LineSplitter
from .progress import ProgressState
from .registry import Registry, Step

REASON_CANCELLED = "cancelled by the user"
REASON_INTERRUPTED = "interrupted: the server stopped while it ran"
DASHBOARD_PREFIX = "[dashboard] "
# Environment variables a step must never see (the dashboard's own secret).
PRIVATE_ENV = ("DASHBOARD_TOKEN",)
RUN_TAG_ENV = "DASHBOARD_RUN_TAG"
_INSTANCE = os.urandom(6).hex()


class RunStatus(str, Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self is not RunStatus.RUNNING


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


class NotRunning(Exception):
    pass


def topic_of(step_id: str) -> str:
    return f"step:{step_id}"


class Run:
    """One execution of a step; its state is read by other threads under ``lock``."""

    LAST_LINES = 10
    LINE_PREVIEW = 400
    FAILURES_SHOWN = 5

    def __init__(self, run_id: int, step: Step, started_at: float, trigger: str, sequence_id, log_rel: str):
        self.id = run_id
        self.step = step
        self.started_at = started_at
        self.trigger = trigger
        self.sequence_id = sequence_id
        self.log_rel = log_rel
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.status = RunStatus.RUNNING
        self.ended_at: float | None = None
        self.return_code: int | None = None
        self.reason: str | None = None
        self.progress = ProgressState()
        self.last_lines: collections.deque = collections.deque(maxlen=self.LAST_LINES)
        self.lines = 0
        self.pid: int | None = None
        self.cancel_requested_at: float | None = None
        self.interrupting = False
        self.reaped = False
        self.escapees: list = []
        # The most bytes found waiting in the pipe at one read, against its size:
        # below the size, the child never found the pipe full (never blocked).
        self.max_pending = 0
        self.pipe_size: int | None = None
        # Counts changes, so that a page can tell a late answer from a fresher event.
        self.version = 0

    def snapshot(self, now: float | None = None) -> dict:
        now = time.time() if now is None else now
        with self.lock:
            p = self.progress
            end = self.ended_at if self.ended_at is not None else now
            elapsed = max(0.0, end - self.started_at)
            fraction = p.fraction
            eta = None
            if self.status is RunStatus.RUNNING and fraction and 0.002 < fraction < 1 and elapsed >= 2:
                eta = elapsed * (1 - fraction) / fraction
            return {
                "id": self.id,
                "version": self.version,
                "step_id": self.step.id,
                "status": self.status.value,
                "cancelling": self.cancel_requested_at is not None and self.status is RunStatus.RUNNING,
                "trigger": self.trigger,
                "sequence_id": self.sequence_id,
                "started_at": self.started_at,
                "ended_at": self.ended_at,
                "elapsed_s": round(elapsed, 3),
                "eta_s": None if eta is None else round(eta, 1),
                "return_code": self.return_code,
                "reason": self.reason,
                "total": p.total,
                "index": p.index,
                "item": p.item,
                "item_done": p.item_done,
                "item_total": p.item_total,
                "in_progress": p.in_progress,
                "fraction": fraction,
                "percent": None if fraction is None else round(100 * fraction, 1),
                "succeeded": p.succeeded,
                "failed": p.failed,
                "skipped": p.skipped,
                "last_success": None if p.last_success is None else vars(p.last_success),
                "failures": [vars(f) for f in p.failures[-self.FAILURES_SHOWN:]],
                "lines": self.lines,
                "last_lines": list(self.last_lines),
                "log": self.log_rel,
            }


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
        self._lock = threading.Lock()
        self._active: dict[str, Run] = {}
        self._latest: dict[str, Run] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._closed = False
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

    # ---- launch ------------------------------------------------------------

    def launch(self, step_id: str, trigger: str = "user", sequence_id: int | None = None) -> Run:
        step = self.registry.get(step_id)
        if step is None:
            raise UnknownStep(f"no step {step_id!r}")
        problems, fix = self.registry.readiness(step)
        if problems:
            raise NotReady(f"{step.name} cannot start: {problems[0]}", problems, fix)
        # Check and register under one lock: two launches at the same instant
        # give one run and one refusal.
        with self._lock:
            if self._closed:
                raise LaunchError("the dashboard is stopping")
            blocker = self._blocker_locked(step)
            if blocker:
                holder = self._active.get(step.id)
                if holder is None:
                    holder = next((r for r in self._active.values() if set(r.step.resources) & set(step.resources)), None)
                raise Busy(blocker, holder.id if holder else None)
            run = self._start(step, trigger, sequence_id)
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

    def _start(self, step: Step, trigger: str, sequence_id) -> Run:
        started = time.time()
        run_id = self.store.create(step.id, started, trigger, sequence_id)
        stamp = datetime.fromtimestamp(started).strftime("%Y%m%d_%H%M%S")
        log_rel = f"{step.id}/run_{run_id:05d}_{stamp}.log"
        run = Run(run_id, step, started, trigger, sequence_id, log_rel)
        log_path = self.logs_dir / log_rel
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_file = open(log_path, "a", encoding="utf-8", errors="replace", newline="\n", buffering=1 << 16)
        except OSError as exc:
            # Not started: the history must say so, not keep a run "running" forever.
            reason = f"could not start: cannot open its log file {log_rel}: {exc.strerror or exc}"
            self._record_end(run, RunStatus.FAILED, None, reason)
            self.log.error("run %s of %s %s", run_id, step.id, reason)
            return run

        values = {
            "root": str(self.registry.root),
            "projects_dir": str(self.projects_dir),
            "logs_dir": str(self.logs_dir),
        }
        args, extra_env = self.registry.expand(step, values)
        python = self.registry.python_of(step)
        argv = [str(python), str(self.registry.script_of(step)), *args]
        cwd = self.registry.root / step.cwd
        env = self._child_env(step, run_id, extra_env)
        log_file.write(
            f"{DASHBOARD_PREFIX}run {run_id} of {step.id} ({step.name}), started {datetime.fromtimestamp(started):%Y-%m-%d %H:%M:%S}\n"
            f"{DASHBOARD_PREFIX}command: {subprocess.list2cmdline(argv)}\n"
            f"{DASHBOARD_PREFIX}working folder: {cwd}\n"
        )
        log_file.flush()
        self.store.update(run_id, log_path=log_rel, argv=argv, updated_at=started)
        try:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True, bufsize=0,
            )
        except OSError as exc:
            reason = f"could not start: {exc.strerror or exc}"
            log_file.write(f"{DASHBOARD_PREFIX}{reason}\n")
            log_file.close()
            self._record_end(run, RunStatus.FAILED, None, reason)
            self.log.error("run %s of %s %s", run_id, step.id, reason)
            return run

        run.pid = proc.pid
        self.store.update(run_id, pid=proc.pid, pid_started_at=procs.started_at(proc.pid))
        try:
            # A bigger pipe absorbs bursts, so a fast child does not wait on the reader.
            fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass
        run.pipe_size = fcntl.fcntl(proc.stdout.fileno(), fcntl.F_GETPIPE_SZ)
        self.log.info("run %s of %s started (pid %s): %s", run_id, step.id, proc.pid, subprocess.list2cmdline(argv))
        thread = threading.Thread(target=self._follow, args=(run, proc, log_file), name=f"run-{run_id}", daemon=True)
        self._threads[run_id] = thread
        thread.start()
        return run

    def _child_env(self, step: Step, run_id: int, extra_env: dict) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV and k != "PYTHONHOME"}
        venv_dir = self.registry.root / step.venv
        env["VIRTUAL_ENV"] = str(venv_dir)
        env["PATH"] = f"{venv_dir / 'bin'}{os.pathsep}{env.get('PATH', os.defpath)}"
        env.update(extra_env)
        env["PYTHONUNBUFFERED"] = "1"
        env["DASHBOARD_RUN_ID"] = str(run_id)
        # Unique to this run whatever the database: how its processes are found
        # once they have left its process group and lost their parent.
        env[RUN_TAG_ENV] = _run_tag(run_id)
        return env

    # ---- cancel ------------------------------------------------------------

    def cancel(self, step_id: str) -> Run:
        run = self.active(step_id)
        if run is None:
            raise NotRunning(f"{step_id} is not running")
        self._signal_stop(run, interrupt=False)
        return run

    def _signal_stop(self, run: Run, interrupt: bool) -> None:
        with run.lock:
            if run.reaped or run.status.finished:
                return
            if not interrupt and run.pid is not None and procs.exited(run.pid):
                return  # it has ended on its own: its outcome is its exit code, not a cancel
            if interrupt:
                run.interrupting = True
            if run.cancel_requested_at is not None:
                return
            run.cancel_requested_at = time.monotonic()
            run.version += 1
            # Descendants that left the group (setsid) would escape killpg:
            # note them now, while the tree is still attached to the child.
            known = {p.pid for p in run.escapees}
            run.escapees.extend(p for p in _escaped_descendants(run.pid) if p.pid not in known)
            procs.signal_group(run.pid, signal.SIGTERM)
            for proc in run.escapees:
                _send(proc, signal.SIGTERM)
        self.log.info("run %s of %s: %s, SIGTERM sent to process group %s",
                      run.id, run.step.id, "server stopping" if interrupt else "cancel requested", run.pid)
        self.bus.publish(topic_of(run.step.id))

    # ---- the reader thread -------------------------------------------------

    def _follow(self, run: Run, proc: subprocess.Popen, log_file) -> None:
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        splitter = LineSplitter()
        selector = selectors.DefaultSelector()
        selector.register(fd, selectors.EVENT_READ)
        grace = run.step.cancel_grace_s
        eof = False
        exit_seen = None  # monotonic time the child was seen exited
        stray_kill_at = None
        cancel_killed = False
        last_checkpoint = last_tree_check = time.monotonic()
        last_exit_check = 0.0
        try:
            while True:
                if not eof and selector.select(0.1):
                    while True:
                        try:
                            data = os.read(fd, 1 << 21)
                        except BlockingIOError:
                            break
                        if not data:
                            eof = True
                            break
                        if len(data) > run.max_pending:
                            run.max_pending = len(data)
                        self._consume(run, splitter.feed(data), log_file)
                        if len(data) < 1 << 16:
                            break
                now = time.monotonic()
                if eof and exit_seen is None:
                    # The pipe is closed: the child is about to exit, wait for it.
                    _wait_exit_nowait(proc.pid, 0.1)
                if exit_seen is None and (eof or now - last_exit_check >= 0.1):
                    last_exit_check = now
                    if procs.exited(proc.pid):
                        exit_seen = now
                        stray_kill_at = self._end_strays(run, grace)
                with run.lock:
                    cancel_at = run.cancel_requested_at
                if exit_seen is None and cancel_at is not None and not cancel_killed and now - cancel_at >= grace:
                    cancel_killed = True
                    self._write(log_file, [f"{DASHBOARD_PREFIX}still running {grace:g} s after SIGTERM: SIGKILL sent"])
                    procs.signal_group(proc.pid, signal.SIGKILL)
                    for p in run.escapees:
                        _send(p, signal.SIGKILL)
                if stray_kill_at is not None and now >= stray_kill_at:
                    self._kill_leftovers(run, proc.pid)
                    stray_kill_at = None
                if exit_seen is not None and (eof or now - exit_seen > grace + 1):
                    # A descendant outside the group may hold the pipe open: stop reading.
                    break
                if exit_seen is None and now - last_tree_check >= 1.0:
                    # Note descendants that left the group (setsid daemons) while the tree
                    # still shows them: once the child exits they are orphans nobody can trace.
                    last_tree_check = now
                    self._note_escapees(run)
                if now - last_checkpoint >= self.checkpoint_s:
                    last_checkpoint = now
                    self._checkpoint(run)
            if stray_kill_at is not None:
                # Strays that closed their output give no EOF to wait for: watch them.
                while time.monotonic() < stray_kill_at and (
                        procs.group_members(proc.pid) or any(_running(p) for p in run.escapees)):
                    time.sleep(0.05)
                self._kill_leftovers(run, proc.pid)
            self._consume(run, splitter.close(), log_file)
        except Exception:  # the run must end whatever happens here
            self.log.exception("run %s of %s: reader failed", run.id, run.step.id)
            procs.signal_group(proc.pid, signal.SIGKILL)
        finally:
            selector.close()
            with run.lock:
                proc.wait()
                run.reaped = True
            proc.stdout.close()
            status, reason = self._outcome(run, proc.returncode)
            self._write(log_file, [f"{DASHBOARD_PREFIX}ended: {status.value} ({reason}) after {time.time() - run.started_at:.1f} s"])
            try:
                log_file.close()
            except OSError:
                pass
            self._end(run, status, proc.returncode, reason)

    def _note_escapees(self, run: Run) -> None:
        self._note(run, _escaped_descendants(run.pid))

    @staticmethod
    def _note(run: Run, found: list) -> None:
        with run.lock:
            known = {p.pid for p in run.escapees}
            run.escapees.extend(p for p in found if p.pid not in known)

    def _end_strays(self, run: Run, grace: float) -> float | None:
        """The child has exited: end whatever it left running, in its group or noted as escaped."""
        strays = procs.group_members(run.pid)
        # Daemons that left the group and whose parent is gone: found by the run's tag.
        self._note(run, [p for p in procs.tagged(RUN_TAG_ENV, _run_tag(run.id))
                         if p.pid != run.pid and p.pid not in {s.pid for s in strays}])
        with run.lock:
            escaped = [p for p in run.escapees if _running(p)]
        if not strays and not escaped:
            return None
        pids = ", ".join(str(p.pid) for p in strays + escaped)
        self.log.warning("run %s of %s: ending %d process(es) left behind by the step: %s",
                         run.id, run.step.id, len(strays) + len(escaped), pids)
        procs.signal_group(run.pid, signal.SIGTERM)
        for proc in escaped:
            _send(proc, signal.SIGTERM)
        return time.monotonic() + min(grace, 2.0)

    @staticmethod
    def _kill_leftovers(run: Run, pgid: int) -> None:
        procs.signal_group(pgid, signal.SIGKILL)
        for p in run.escapees:
            _send(p, signal.SIGKILL)

    def _outcome(self, run: Run, returncode: int) -> tuple[RunStatus, str]:
        with run.lock:
            interrupting, cancelled = run.interrupting, run.cancel_requested_at is not None
        if interrupting:
            return RunStatus.INTERRUPTED, REASON_INTERRUPTED
        if cancelled:
            return RunStatus.CANCELLED, REASON_CANCELLED
        reason = procs.describe_exit(returncode)
        meaning = run.step.exit_meaning(returncode)
        if meaning:
            reason = f"{reason} ({meaning})"
        return (RunStatus.SUCCEEDED if returncode == 0 else RunStatus.FAILED), reason

    def _consume(self, run: Run, lines: list[str], log_file) -> None:
        if not lines:
            return
        matcher = run.step.matcher
        preview = Run.LINE_PREVIEW
        with run.lock:
            if matcher is not None:
                for line in lines:
                    found = matcher.match(line)
                    if found:
                        run.progress.apply(*found)
            run.last_lines.extend(line[:preview] for line in lines[-Run.LAST_LINES:])
            run.lines += len(lines)
            run.version += 1
        self._write(log_file, lines)
        self.bus.publish(topic_of(run.step.id))

    def _write(self, log_file, lines: list[str]) -> None:
        # A full disk must not kill the step: its lines still reach the page.
        try:
            log_file.write("\n".join(lines))
            log_file.write("\n")
            log_file.flush()
        except (OSError, ValueError) as exc:
            self.log.warning("cannot write to %s: %s", getattr(log_file, "name", "the run log"), exc)

    def _checkpoint(self, run: Run) -> None:
        with run.lock:
            p = run.progress
            fields = dict(total=p.total, succeeded=p.succeeded, failed=p.failed, skipped=p.skipped,
                          fraction=p.fraction, current_item=p.item, lines=run.lines, updated_at=time.time())
        self._store_update(run, fields)

    def _store_update(self, run: Run, fields: dict) -> None:
        # The history must not take the run down with it (a locked or closed database).
        try:
            self.store.update(run.id, **fields)
        except sqlite3.Error as exc:
            self.log.error("run %s of %s: cannot record %s in the history: %s",
                           run.id, run.step.id, ", ".join(fields), exc)

    def _end(self, run: Run, status: RunStatus, returncode: int | None, reason: str) -> None:
        # The status and the table of active runs change together: whoever sees the
        # run ended also finds its step and its resources free.
        with self._lock:
            self._record_end(run, status, returncode, reason)
            if self._active.get(run.step.id) is run:
                del self._active[run.step.id]
            self._latest[run.step.id] = run
            self._threads.pop(run.id, None)
        self._publish_around(run.step.id)
        self._notify_ended(run)

    def _notify_ended(self, run: Run) -> None:
        run.done.set()
        with self.changed:
            self.changed.notify_all()

    def _record_end(self, run: Run, status: RunStatus, returncode: int | None, reason: str) -> None:
        ended = time.time()
        with run.lock:
            if status is RunStatus.SUCCEEDED:
                run.progress.complete()
            run.status = status
            run.version += 1
            run.ended_at = ended
            run.return_code = returncode
            run.reason = reason
            p = run.progress
            fields = dict(status=status.value, ended_at=ended, return_code=returncode, reason=reason,
                          total=p.total, succeeded=p.succeeded, failed=p.failed, skipped=p.skipped,
                          fraction=p.fraction, current_item=p.item, lines=run.lines, updated_at=ended,
                          failures=[vars(f) for f in p.failures[-Run.FAILURES_SHOWN:]],
                          last_success=None if p.last_success is None else vars(p.last_success))
        self._store_update(run, fields)
        self.log.info("run %s of %s ended: %s (%s)", run.id, run.step.id, status.value, reason)

    # ---- start-up and shut-down -------------------------------------------

    def recover(self, grace: float = 3.0) -> list[int]:
        """Runs a previous server left marked running: end their groups, mark them interrupted."""
        recovered = []
        for row in self.store.with_status(RunStatus.RUNNING.value):
            ended = 0
            if row.get("pid"):
                ended = procs.end_stale_group(row["pid"], row.get("pid_started_at"), grace)
            when = row.get("updated_at") or row["started_at"]
            self.store.update(row["id"], status=RunStatus.INTERRUPTED.value, reason=REASON_INTERRUPTED, ended_at=when)
            note = f"; ended {ended} process(es) it left running" if ended else ""
            self.log.warning("run %s of %s was still marked running: marked interrupted%s", row["id"], row["step_id"], note)
            self._append_to_log(row.get("log_path"), f"{DASHBOARD_PREFIX}ended: interrupted ({REASON_INTERRUPTED}){note}")
            recovered.append(row["id"])
        return recovered

    def _append_to_log(self, log_rel: str | None, text: str) -> None:
        if not log_rel:
            return
        path = self.logs_dir / log_rel
        if path.is_file() and not path.is_symlink():
            with open(path, "a", encoding="utf-8") as f:
                f.write(text + "\n")

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


def _run_tag(run_id: int) -> str:
    return f"{_INSTANCE}-{run_id}"


def _wait_exit_nowait(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not procs.exited(pid):
        time.sleep(0.01)


def _escaped_descendants(pid: int) -> list:
    try:
        pgid = os.getpgid(pid)
        return [c for c in psutil.Process(pid).children(recursive=True) if _pgid(c.pid) not in (pgid, None)]
    except (ProcessLookupError, psutil.Error):
        return []


def _pgid(pid: int):
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _running(proc) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _send(proc, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except psutil.Error:
        pass
