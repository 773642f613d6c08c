"""The dashboard's parts wired together, and the views of their state.

No web framework here either: the blueprints call these methods, and so can a
script or a test. Every state the pages and the API show is built here (a
run's own JSON in run_view.py, the same live or from the history), so the JSON
API and the pages cannot disagree.
"""
import logging
import time
from logging.handlers import RotatingFileHandler
from pathlib import Path

from . import logfiles, preview
from .bus import STEP_TOPIC, EventBus, topic_of
from .db_check import check_database, check_logs_folder
from .history import SCHEMA_VERSION, RunStore
from .instance_lock import InstanceLock
from .orphans import Orphans, become_subreaper
from .projects import folder_problem, list_videos
from .registry import Registry, load_registry
from .run_log import DASHBOARD_PREFIX
from .run_view import history_view, live_view
from .runner import Runner
from .sequence import TOPIC as SEQUENCE_TOPIC
from .sequence import SequenceRunner
from .status import REASON_INTERRUPTED, RunStatus
from .system import SystemSampler

APP_LOG = "app.log"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def make_logger(logs_dir: Path, echo: bool = False) -> logging.Logger:
    """A logger of its own per dashboard (tests build many): app.log, rotated, appended to."""
    logger = logging.Logger("dashboard")
    logger.setLevel(logging.INFO)
    logs_dir.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(logs_dir / APP_LOG, maxBytes=5 * 1024 * 1024, backupCount=5, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)
    if echo:
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        stream.setLevel(logging.WARNING)
        logger.addHandler(stream)
    return logger


class Dashboard:
    def __init__(self, root: Path, workflow_path: Path, projects_dir: Path, logs_dir: Path, db_path: Path,
                 echo: bool = False, recover: bool = True, nvidia_smi: str | None = None, url: str | None = None,
                 subreaper: bool = False):
        self.root = Path(root).resolve()
        self.projects_dir = Path(projects_dir).resolve()
        self.logs_dir = Path(logs_dir).resolve()
        # Before anything touches the history: a second dashboard on it stops
        # here (AlreadyRunning), before its recovery could end the first one's runs.
        self.instance = InstanceLock(Path(db_path)).acquire()
        try:
            check_logs_folder(self.logs_dir)
            check_database(Path(db_path), SCHEMA_VERSION)
            self._start(workflow_path, db_path, echo, recover, nvidia_smi, subreaper)
        except BaseException:
            self.instance.release()
            raise
        self.instance.describe(url)

    def _start(self, workflow_path, db_path, echo, recover, nvidia_smi, subreaper) -> None:
        self.log = make_logger(self.logs_dir, echo)
        self.registry: Registry = load_registry(Path(workflow_path), self.root)
        for problem in self.registry.problems + [p for s in self.registry.steps for p in s.problems]:
            self.log.error("config: %s", problem)
        for step in self.registry.steps:
            # What the file alone cannot tell: a missing script, venv or folder.
            for problem in self.registry.readiness(step)[0]:
                if problem not in step.problems:
                    self.log.error("step %s cannot start: %s", step.id, problem)
        found = folder_problem(self.projects_dir)
        if found:
            # One line, at start-up: the steps' own lines would only say so after a failed run.
            fix = f" (create it: {found[1]})" if found[1] else ""
            self.log.error("%s: Run and Run all stay disabled until it can be used%s", found[0], fix)
        self.store = RunStore(Path(db_path))
        self.bus = EventBus()
        self.runner = Runner(self.registry, self.store, self.logs_dir, self.projects_dir, self.bus, self.log)
        self.sequences = SequenceRunner(self.registry, self.runner, self.store, self.bus, self.log)
        # Only the server process (app.py) adopts orphans: in a process that runs
        # other children (a test), reaping could take one another part waits for.
        self.orphans = Orphans(self.runner.step_pids, self.log) if subreaper and become_subreaper() else None
        if self.orphans is not None:
            self.runner.orphans = self.orphans
            self.orphans.start()
        self.system = SystemSampler(self.projects_dir if self.projects_dir.exists() else self.root, nvidia_smi)
        if recover:
            self.runner.recover()
            self.store.interrupt_sequences(time.time(), REASON_INTERRUPTED)
        self.log.info("dashboard ready: %d step(s), projects folder %s", len(self.registry.steps), self.projects_dir)
        self._closed = False

    # ---- state views -------------------------------------------------------

    def step_state(self, step_id: str) -> dict | None:
        step = self.registry.get(step_id)
        if step is None:
            return None
        problems, fix = self.runner.readiness(step)
        # The card is about the folder the steps work on now: a run on another
        # folder (or on an unrecorded one, from an older history) is only in the history.
        run = self.runner.latest(step.id)
        if run is not None:
            snapshot = live_view(run)
        else:
            row = self.store.latest(step.id, projects_dir=str(self.projects_dir))
            snapshot = self._from_history(row, with_lines=True) if row else None
        running = snapshot is not None and snapshot["status"] == RunStatus.RUNNING.value
        return {
            "id": step.id,
            "name": step.name,
            "description": step.description,
            "venv": step.venv,
            "script": step.script,
            "resources": list(step.resources),
            "run_all": step.run_all,
            "problems": problems,
            "fix": fix,
            "ready": not problems,
            "running": running,
            "blocked": None if running else self.runner.blocker(step),
            "run": snapshot,
        }

    def steps_state(self) -> list[dict]:
        return [self.step_state(s.id) for s in self.registry.steps]

    def sequence_state(self) -> dict:
        seq = self.sequences.current()
        refusal = self.sequences.problem()
        return {
            "steps": self.sequences.steps(),
            "current": seq.snapshot() if seq else None,
            "problem": str(refusal) if refusal else None,  # why "Run all" cannot start now
            "fix": refusal.fix if refusal else None,
        }

    def projects_problem(self) -> str | None:
        found = folder_problem(self.projects_dir)
        return found[0] if found else None

    def projects_fix(self) -> str | None:
        found = folder_problem(self.projects_dir)
        return found[1] if found else None

    def readiness_signature(self) -> tuple:
        """What decides which buttons are enabled, to tell when it changes
        without a run to announce it (a folder or a venv created meanwhile)."""
        return self.projects_problem(), tuple(bool(self.runner.readiness(s)[0]) for s in self.registry.steps)

    def snapshot(self) -> dict:
        return {
            "server_time": time.time(),
            "projects_dir": str(self.projects_dir),
            "projects_problem": self.projects_problem(),
            "projects_fix": self.projects_fix(),
            "steps": self.steps_state(),
            "sequence": self.sequence_state(),
            "config_problems": list(self.registry.problems),
        }

    def topic_state(self, topic: str):
        """(event name, payload) for a bus topic."""
        if topic == SEQUENCE_TOPIC:
            return "sequence", self.sequence_state()
        if topic.startswith(STEP_TOPIC):
            state = self.step_state(topic[len(STEP_TOPIC):])
            if state is not None:
                # A step's end can unblock another step that shares its resource.
                return "step", state
        return None

    def run_state(self, run_id: int) -> dict | None:
        run = self.runner.get(run_id)
        if run is not None:
            return live_view(run)
        row = self.store.get(run_id)
        return self._from_history(row, with_lines=False) if row else None

    def runs(self, step_id=None, status=None, limit=50, offset=0, folder=None) -> tuple[list[dict], int]:
        rows, total = self.store.find(step_id=step_id, status=status, limit=limit, offset=offset,
                                      projects_dir=folder)
        live = {r.id: r for r in self.runner.active_runs()}
        out = [live_view(live[r["id"]]) if r["id"] in live else self._from_history(r, with_lines=False) for r in rows]
        return out, total

    def _from_history(self, row: dict, with_lines: bool) -> dict:
        step = self.registry.get(row["step_id"])
        return history_view(row, step, self._last_lines(row["log_path"], step) if with_lines else [])

    def _last_lines(self, log_rel: str | None, step, count: int = 10) -> list[str]:
        """The last meaningful lines a step printed, from its log (after a restart,
        memory is gone), as the live run showed them."""
        if not log_rel:
            return []
        matcher = step.matcher if step else None

        def keep(line: str) -> bool:
            return not line.startswith(DASHBOARD_PREFIX) and preview.meaningful(line, matcher)

        try:
            with logfiles.open_log(self.logs_dir, log_rel).file as f:
                lines = logfiles.tail(f, count, keep, scan_budget=4 * 1024 * 1024)["lines"]
        except (OSError, logfiles.UnsafePath):
            return []
        return [preview.shorten(line) for line in lines]

    def open_run_log(self, run_id: int) -> logfiles.OpenedLog | None:
        """The run's log opened (see logfiles.open_log), or None when it has none.
        Raises FileNotFoundError or logfiles.UnsafePath."""
        row = self.store.get(run_id)
        if not row or not row["log_path"]:
            return None
        return logfiles.open_log(self.logs_dir, row["log_path"])

    def videos(self) -> dict:
        return list_videos(self.projects_dir)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.sequences.shutdown(timeout=0)  # no new step; it ends once its run does
        self.runner.shutdown()
        self.sequences.shutdown()
        if self.orphans is not None:
            self.orphans.stop()
        self.bus.close()
        self.store.close()
        self.log.info("dashboard stopped")
        for handler in list(self.log.handlers):
            self.log.removeHandler(handler)
            handler.close()
        self.instance.release()


__all__ = ["Dashboard", "APP_LOG", "topic_of"]
