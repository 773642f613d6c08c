"""Run history in one SQLite file.

Two connections shared by the server's threads, each behind its own lock: one
writes (a run's start, its end, a progress checkpoint every few seconds), one
reads. SQLite in WAL mode lets the reader go on while a writer waits for a
lock another process holds (up to its busy timeout, 10 s): the pages stay
fast then (with one connection, GET /api/steps/<id> took 6 s). The number of
open files stays fixed however many runs go by.

A read that finds the file damaged answers empty and sets ``problem`` (the
pages say so) instead of failing every page: the steps still run and their
live state is still shown.
"""
import json
import sqlite3
import threading
from pathlib import Path

from .status import RunStatus, SequenceStatus

SCHEMA_VERSION = 6
CREATE_BUSY_S = 2.0
# Columns added since version 1: (name, declaration), applied to older files.
# projects_dir (version 3): the folder a run worked on; NULL for the runs of
# older files, which did not record it. scenes and error_line (version 4): what
# the result's sentence is made of (NULL in older runs: said without them).
# options (version 5): the run's options as chosen on the page, a JSON object
# (NULL in older runs, which ran with the step's defaults).
# tracking (version 6): how to find the run's processes after a crash of the
# server, {"tag": its environment tag, "escapees": [[pid, start time], ...]}.
_ADDED = (("failures", "TEXT"), ("last_success", "TEXT"), ("projects_dir", "TEXT"), ("scenes", "INTEGER"),
          ("error_line", "TEXT"), ("options", "TEXT"), ("tracking", "TEXT"))
JSON_COLUMNS = ("argv", "failures", "last_success", "options", "tracking")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    step_id TEXT NOT NULL,
    status TEXT NOT NULL,
    trigger TEXT NOT NULL DEFAULT 'user',
    sequence_id INTEGER,
    started_at REAL NOT NULL,
    ended_at REAL,
    return_code INTEGER,
    reason TEXT,
    total INTEGER,
    succeeded INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    fraction REAL,
    current_item TEXT,
    lines INTEGER NOT NULL DEFAULT 0,
    log_path TEXT,
    argv TEXT,
    pid INTEGER,
    pid_started_at REAL,
    updated_at REAL,
    failures TEXT,
    last_success TEXT,
    projects_dir TEXT,
    scenes INTEGER,
    error_line TEXT,
    options TEXT,
    tracking TEXT
);
CREATE TABLE IF NOT EXISTS sequences (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    status TEXT NOT NULL,
    steps TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_step ON runs (step_id, id);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status);
"""

COLUMNS = (
    "id", "step_id", "status", "trigger", "sequence_id", "started_at", "ended_at", "return_code",
    "reason", "total", "succeeded", "failed", "skipped", "fraction", "current_item", "lines",
    "log_path", "argv", "pid", "pid_started_at", "updated_at", "failures", "last_success", "projects_dir",
    "scenes", "error_line", "options", "tracking",
)
_UPDATABLE = set(COLUMNS) - {"id", "step_id", "started_at", "projects_dir", "options"}


class RunStore:
    def __init__(self, path: Path, busy_timeout: float = 10.0):
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.problem: str | None = None  # a damaged file found while running, in words
        self._lock = threading.Lock()
        self._db = self._connect()
        self._read_lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path}: written by a newer dashboard (schema {version} > {SCHEMA_VERSION})")
            self._db.executescript(_SCHEMA)
            present = {r[1] for r in self._db.execute("PRAGMA table_info(runs)")}
            for name, declaration in _ADDED:
                if name not in present:  # a file from an older dashboard
                    self._db.execute(f"ALTER TABLE runs ADD COLUMN {name} {declaration}")
            # After the columns: an older file gets its projects_dir column above.
            self._db.execute("CREATE INDEX IF NOT EXISTS runs_by_folder ON runs (projects_dir, step_id, id)")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=self.busy_timeout)
        db.row_factory = sqlite3.Row
        return db

    def _read(self, sql: str, params=(), one: bool = False):
        """Rows of a query on the reading connection; none when the file is damaged."""
        with self._read_lock:
            try:
                if self._reader is None:
                    self._reader = self._connect()
                cursor = self._reader.execute(sql, params)
                return cursor.fetchone() if one else cursor.fetchall()
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                    raise
                self.problem = f"the history database {self.path} cannot be read ({exc}): steps still run and " \
                               f"show here while they do, but the history misses them; stop the dashboard and " \
                               f"move the file aside (a fresh history is made)"
                return None if one else []

    def create(self, step_id: str, started_at: float, trigger: str = "user", sequence_id=None,
               argv=None, status: str = RunStatus.RUNNING.value, projects_dir: str | None = None,
               options: dict | None = None) -> int:
        with self._lock:
            # A launch waits at most CREATE_BUSY_S for a database another program
            # holds (the runner's lock is held meanwhile): then it is refused in words.
            self._db.execute(f"PRAGMA busy_timeout = {int(min(CREATE_BUSY_S, self.busy_timeout) * 1000)}")
            try:
                cur = self._insert_run(
                    "INSERT INTO runs (step_id, status, trigger, sequence_id, started_at, argv, projects_dir, options)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (step_id, status, trigger, sequence_id, started_at,
                     json.dumps(argv) if argv is not None else None,
                     projects_dir, json.dumps(options) if options is not None else None),
                )
            finally:
                self._db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            return cur.lastrowid

    def _insert_run(self, sql: str, params):
        try:
            return self._db.execute(sql, params)
        except sqlite3.DatabaseError as exc:
            if not isinstance(exc, sqlite3.OperationalError):  # damaged, not busy or full
                self.problem = self.problem or (
                    f"the history database {self.path} is damaged ({exc}): steps still run and show here while "
                    f"they do, but the history misses them; stop the dashboard and move the file aside "
                    f"(a fresh history is made)")
            raise

    def update(self, run_id: int, **fields) -> None:
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"unknown run field(s): {', '.join(sorted(unknown))}")
        for name in JSON_COLUMNS:
            if fields.get(name) is not None:
                fields[name] = json.dumps(fields[name])
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._lock:
            self._db.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*fields.values(), run_id))

    def get(self, run_id: int) -> dict | None:
        row = self._read("SELECT * FROM runs WHERE id = ?", (run_id,), one=True)
        return _as_dict(row) if row else None

    def find(self, step_id: str | None = None, status: str | None = None, limit: int = 50, offset: int = 0,
             projects_dir: str | None = None):
        """Runs, newest first, and how many match; ``projects_dir`` keeps the runs on that folder."""
        where, params = [], []
        for column, value in (("step_id", step_id), ("status", status), ("projects_dir", projects_dir)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        counted = self._read(f"SELECT COUNT(*) FROM runs {clause}", params, one=True)
        total = counted[0] if counted else 0
        rows = self._read(f"SELECT * FROM runs {clause} ORDER BY id DESC LIMIT ? OFFSET ?", (*params, limit, offset))
        return [_as_dict(r) for r in rows], total

    def latest(self, step_id: str, projects_dir: str | None = None) -> dict | None:
        rows, _ = self.find(step_id=step_id, limit=1, projects_dir=projects_dir)
        return rows[0] if rows else None

    def folders(self) -> list[str]:
        """The projects folders runs were recorded on, the most recently used first."""
        rows = self._read("SELECT projects_dir FROM runs WHERE projects_dir IS NOT NULL"
                          " GROUP BY projects_dir ORDER BY MAX(id) DESC")
        return [r[0] for r in rows]

    def with_status(self, status: str) -> list[dict]:
        rows = self._read("SELECT * FROM runs WHERE status = ? ORDER BY id", (status,))
        return [_as_dict(r) for r in rows]

    def create_sequence(self, steps: list[str], started_at: float) -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO sequences (status, steps, started_at) VALUES (?, ?, ?)",
                (SequenceStatus.RUNNING.value, json.dumps(steps), started_at),
            )
            return cur.lastrowid

    def finish_sequence(self, sequence_id: int, status: SequenceStatus, ended_at: float, reason: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE sequences SET status = ?, ended_at = ?, reason = ? WHERE id = ?",
                (SequenceStatus(status).value, ended_at, reason, sequence_id),
            )

    def interrupt_sequences(self, ended_at: float, reason: str) -> int:
        with self._lock:
            cur = self._db.execute(
                "UPDATE sequences SET status = ?, ended_at = ?, reason = ? WHERE status = ?",
                (SequenceStatus.INTERRUPTED.value, ended_at, reason, SequenceStatus.RUNNING.value),
            )
            return cur.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()


def _as_dict(row: sqlite3.Row) -> dict:
    data = dict(row)
    for name in JSON_COLUMNS:
        if data.get(name):
            try:
                data[name] = json.loads(data[name])
            except ValueError:
                data[name] = None
    return data
