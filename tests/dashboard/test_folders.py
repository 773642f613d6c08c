"""Runs record their projects folder: the cards show the current folder's runs,
the history shows every run's folder and filters by it."""
import re
import sqlite3
from urllib.parse import urlencode

from dash_support import step

from dashboard.history import SCHEMA_VERSION

# The runs table as the dashboard of schema 2 wrote it (no projects_dir).
SCHEMA_2 = """CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, step_id TEXT NOT NULL,
    status TEXT NOT NULL, trigger TEXT NOT NULL DEFAULT 'user', sequence_id INTEGER,
    started_at REAL NOT NULL, ended_at REAL, return_code INTEGER, reason TEXT, total INTEGER,
    succeeded INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0, fraction REAL, current_item TEXT,
    lines INTEGER NOT NULL DEFAULT 0, log_path TEXT, argv TEXT, pid INTEGER,
    pid_started_at REAL, updated_at REAL, failures TEXT, last_success TEXT);
    INSERT INTO runs (step_id, status, started_at, ended_at, return_code, reason, total, succeeded, fraction)
        VALUES ('p', 'succeeded', 1700000000.0, 1700000010.0, 0, 'exit code 0', 1, 1, 1.0);
    PRAGMA user_version=2;"""


def run_to_end(app, step_id="p"):
    run = app.extensions["dashboard"].runner.launch(step_id)
    assert run.done.wait(20)
    return run


def rows(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'<tr data-run="(\d+)">', html)]


def runs_on(client, folder) -> list[int]:
    return [r["id"] for r in client.get("/api/runs?" + urlencode({"folder": str(folder)})).get_json()["runs"]]


def test_a_new_folder_starts_with_empty_cards_and_the_history_tells_the_folders_apart(make_app, paths, tmp_path):
    first_app = make_app([step("p", "progress.py", "--items", "1")])
    first_folder = first_app.extensions["dashboard"].projects_dir
    first = run_to_end(first_app)
    first_app.extensions["dashboard"].close()

    other = (tmp_path / "other projects").resolve()
    other.mkdir()
    app = make_app(None, PROJECTS_DIR=str(other))  # a restart on another folder, same history
    client = app.test_client()
    assert client.get("/api/steps/p").get_json()["run"] is None
    html = client.get("/").get_data(as_text=True)
    assert "not run on this projects folder yet" in html and "1 succeeded" not in html
    assert client.get("/api/runs").get_json()["runs"][0]["projects_dir"] == str(first_folder)
    assert runs_on(client, other) == []

    second = run_to_end(app)
    card = client.get("/api/steps/p").get_json()["run"]
    assert card["id"] == second.id and card["projects_dir"] == str(other)
    assert runs_on(client, other) == [second.id] and runs_on(client, first_folder) == [first.id]
    assert [r["id"] for r in client.get("/api/runs").get_json()["runs"]] == [second.id, first.id]

    history = client.get("/history").get_data(as_text=True)
    assert rows(history) == [second.id, first.id]
    assert f"<code>{other}</code>" in history and f"<code>{first_folder}</code>" in history
    assert f'<option value="{other}">{other} (the current one)</option>' in history
    only = client.get("/history?" + urlencode({"folder": str(first_folder)})).get_data(as_text=True)
    assert rows(only) == [first.id]
    assert f'<option value="{first_folder}" selected>' in only


def test_the_same_folder_again_shows_its_last_run(make_app):
    app = make_app([step("p", "progress.py", "--items", "1")])
    run = run_to_end(app)
    app.extensions["dashboard"].close()
    again = make_app(None).test_client()  # a restart on the same folder
    assert again.get("/api/steps/p").get_json()["run"]["id"] == run.id


def test_a_history_of_schema_2_is_upgraded_and_its_runs_show_no_folder(make_app, paths):
    paths["db"].parent.mkdir(parents=True)
    db = sqlite3.connect(paths["db"])
    db.executescript(SCHEMA_2)
    db.close()
    app = make_app([step("p", "progress.py", "--items", "1")])
    client = app.test_client()
    old = client.get("/api/runs/1").get_json()
    assert old["status"] == "succeeded" and old["projects_dir"] is None
    assert old["scenes"] is None and old["outcome"] == "Done: 1 video processed"  # said without what it lacks
    assert client.get("/api/steps/p").get_json()["run"] is None, "an unrecorded folder is not the current one"
    assert "not recorded" in client.get("/history").get_data(as_text=True)
    new = run_to_end(app)
    assert [r["projects_dir"] for r in client.get("/api/runs").get_json()["runs"]] == \
        [str(app.extensions["dashboard"].projects_dir), None]
    assert client.get("/api/steps/p").get_json()["run"]["id"] == new.id
    app.extensions["dashboard"].close()
    db = sqlite3.connect(paths["db"])
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 3
    db.close()
