"""Starting a step's child: its command line, its environment, its log's header.

The child runs in its own session (its process group id is its pid, so one
signal reaches everything it starts), with its venv's Python, unbuffered,
without the dashboard's secret, and tagged so that its processes can be found
even once they have left its group and lost their parent.
"""
import fcntl
import logging
import os
import sqlite3
import subprocess
from datetime import datetime
from pathlib import Path

from . import procs
from .options import to_argv
from .history import RunStore
from .registry import Registry, Step
from .run import Run
from .run_log import RunLog
from .status import could_not_start, log_not_opened

# Environment variables a step must never see (the dashboard's own secret).
PRIVATE_ENV = ("DASHBOARD_TOKEN",)
RUN_TAG_ENV = "DASHBOARD_RUN_TAG"
# Tells this server's runs from those of another server sharing the machine.
INSTANCE = os.urandom(6).hex()


def run_tag(run_id: int) -> str:
    return f"{INSTANCE}-{run_id}"


class StartFailed(Exception):
    """The child could not be started; ``reason`` is the run's reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Launcher:
    def __init__(self, registry: Registry, store: RunStore, logs_dir: Path, projects_dir: Path,
                 logger: logging.Logger):
        self.registry = registry
        self.store = store
        self.logs_dir = logs_dir
        self.projects_dir = projects_dir
        self.log = logger

    def start(self, run: Run) -> tuple[subprocess.Popen, RunLog]:
        """Open the run's log, start its child; raise StartFailed if either cannot be done."""
        step = run.step
        log = self._open_log(run)
        argv, cwd, env = self._command(step, run.id, run.options)
        failed = log.note(*self._header(run, argv, cwd))
        if failed is not None:
            # A step whose lines cannot be kept (a full disk) is not started: the
            # history would point at an empty log.
            log.close()
            raise StartFailed(log_not_opened(run.log_rel, str(failed.strerror or failed)))
        try:
            self.store.update(run.id, log_path=run.log_rel, argv=argv, updated_at=run.started_at,
                              tracking={"tag": run_tag(run.id), "escapees": []})
        except sqlite3.Error as exc:  # a damaged or locked history: the step runs all the same
            self.log.error("run %s of %s: its start is not recorded in the history: %s", run.id, step.id, exc)
        try:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True, bufsize=0,
            )
        except OSError as exc:
            reason = could_not_start(str(exc.strerror or exc))
            log.note(reason)
            log.close()
            raise StartFailed(reason) from None
        run.pid = proc.pid
        try:
            self.store.update(run.id, pid=proc.pid, pid_started_at=procs.started_at(proc.pid))
        except sqlite3.Error as exc:  # the child runs: it is followed all the same
            self.log.error("run %s of %s: its process is not recorded in the history: %s", run.id, step.id, exc)
        run.pipe_size = _widen_pipe(proc.stdout.fileno())
        self.log.info("run %s of %s started (pid %s): %s", run.id, step.id, proc.pid, subprocess.list2cmdline(argv))
        return proc, log

    def _open_log(self, run: Run) -> RunLog:
        path = self.logs_dir / run.log_rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return RunLog(path, self.log)
        except OSError as exc:
            # Not started: the history must say so, not keep a run "running" forever.
            raise StartFailed(log_not_opened(run.log_rel, str(exc.strerror or exc))) from None

    def _command(self, step: Step, run_id: int, options: dict) -> tuple[list[str], Path, dict]:
        values = {
            "root": str(self.registry.root),
            "projects_dir": str(self.projects_dir),
            "logs_dir": str(self.logs_dir),
        }
        args, extra_env = self.registry.expand(step, values)
        python = self.registry.python_of(step)
        # The chosen options after the configured arguments: only those that differ from
        # their defaults, so the step's own config file decides the rest.
        argv = [str(python), str(self.registry.script_of(step)), *args, *to_argv(step.options, options)]
        cwd = self.registry.root / step.cwd
        return argv, cwd, self._child_env(step, run_id, extra_env)

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
        env[RUN_TAG_ENV] = run_tag(run_id)
        return env

    @staticmethod
    def _header(run: Run, argv: list[str], cwd: Path) -> list[str]:
        step = run.step
        return [
            f"run {run.id} of {step.id} ({step.name}), started {datetime.fromtimestamp(run.started_at):%Y-%m-%d %H:%M:%S}",
            f"command: {subprocess.list2cmdline(argv)}",
            f"working folder: {cwd}",
        ]


def _widen_pipe(fd: int) -> int:
    """Enlarge the child's output pipe; returns its size."""
    try:
        # A bigger pipe absorbs bursts, so a fast child does not wait on the reader.
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass
    return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
