"""The history database and the logs folder checked before the dashboard starts.

Each problem becomes one line naming the file, the cause and the fix, and the
dashboard exits with code 2, instead of a 20-line traceback or, worse, a start
that looks fine while every page answers 500 (a database with one bad page
passed `/api/health`).
"""
import os
import shlex
import sqlite3
from pathlib import Path
from urllib.parse import quote


class StorageProblem(RuntimeError):
    """The database or the logs folder cannot be used; the message says why and what to do."""


def _move_aside(path: Path) -> str:
    return f"move it aside (mv {shlex.quote(str(path))} {shlex.quote(str(path) + '.damaged')}) and a fresh history is made"


def check_database(path: Path, newest_schema: int) -> None:
    """Raise StorageProblem when ``path`` cannot be the run history: a folder,
    unreadable or read-only, not SQLite, damaged, or from a newer dashboard.
    A file that does not exist yet is fine (it is created)."""
    path = Path(path)
    if path.is_dir():
        raise StorageProblem(f"the history database {path} is a folder; give --database a file path")
    if not path.exists():
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not os.access(folder, os.W_OK | os.X_OK):
            raise StorageProblem(f"cannot create the history database {path}: the folder {folder} is not writable")
        return
    if not os.access(path, os.R_OK | os.W_OK):
        raise StorageProblem(f"the history database {path} is not readable and writable by this user; "
                             f"fix its permissions or give another --database")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise StorageProblem(f"the folder of the history database {path} is not writable (SQLite needs its "
                             f"journal beside it); fix its permissions or give another --database")
    problem, version = _inspect(path)
    if problem:
        raise StorageProblem(f"the history database {path} is damaged ({problem}); {_move_aside(path)}")
    if version > newest_schema:
        raise StorageProblem(f"the history database {path} was written by a newer dashboard (schema {version}, this "
                             f"one knows {newest_schema}): run that version, or {_move_aside(path)}")


def _inspect(path: Path) -> tuple[str | None, int]:
    """(what is wrong, or None; the schema version)."""
    if path.stat().st_size == 0:
        return None, 0  # an empty file is a new database to SQLite
    with open(path, "rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            return "not an SQLite file", 0
    try:
        db = sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True, timeout=10)
    except sqlite3.Error as exc:
        return str(exc), 0
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        # quick_check reads every page (b-tree structure, record formats):
        # about 0.1 s for a history of 100k runs.
        rows = [r[0] for r in db.execute("PRAGMA quick_check(3)").fetchall()]
        if rows != ["ok"]:
            return "; ".join(rows)[:300], version
        return None, version
    except sqlite3.Error as exc:
        return str(exc), 0
    finally:
        db.close()


def check_logs_folder(logs_dir: Path) -> None:
    """Raise StorageProblem when ``logs_dir`` cannot be created or written."""
    logs_dir = Path(logs_dir)
    try:
        logs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageProblem(f"cannot create the logs folder {logs_dir}: {exc.strerror or exc}") from None
    if not logs_dir.is_dir():
        raise StorageProblem(f"the logs folder {logs_dir} is not a folder")
    if not os.access(logs_dir, os.W_OK | os.X_OK):
        raise StorageProblem(f"the logs folder {logs_dir} is not writable by this user; fix its permissions "
                             f"or give another --logs-dir")
