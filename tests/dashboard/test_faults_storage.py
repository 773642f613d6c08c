"""The history and the logs when storage fails (issue 10, items 2-4): a full
disk under logs/ or under the database, a database held locked by another
program across a run's end, a database damaged while the dashboard runs.
Real SQLite files; the full disks are real tmpfs mounts in a private mount
namespace (unshare), so nothing of the machine's is touched."""
import json
import logging
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import pytest
from dash_support import ROOT, step, write_workflow

from dashboard.bus import EventBus
from dashboard.history import RunStore
from dashboard.registry import load_registry
from dashboard.runner import Runner

FULL_DISK_SCRIPT = """
import json, os, sys, time
from pathlib import Path
from dashboard import create_app
settings, full = json.loads(sys.argv[1]), Path(sys.argv[2])
app = create_app(settings)
svc = app.extensions["dashboard"]
fd = os.open(full / "filler", os.O_WRONLY | os.O_CREAT)
try:  # fill the file system up
    while True:
        os.write(fd, b"x" * 4096)
except OSError:
    os.close(fd)
client = app.test_client()
answers = []
for _ in range(2):
    r = client.post("/api/steps/s/run")
    body = r.get_json()
    state = client.get(f"/api/runs/{body['run_id']}").get_json() if "run_id" in body else None
    answers.append({"status": r.status_code, "body": body, "state": state})
running = svc.store.with_status("running")
print(json.dumps({"answers": answers, "running": len(running), "cancel": client.post("/api/steps/s/cancel").status_code}))
svc.close()
"""


def run_on_a_full_disk(tmp_path, what):
    """The app with ``what`` ("logs" or "data") on a 1 MB tmpfs that it fills up."""
    mount = tmp_path / "small"
    mount.mkdir()
    (tmp_path / "projects").mkdir()
    workflow = write_workflow(tmp_path / "workflow.json", [step("s", "progress.py", "--items", "1")])
    settings = {"ROOT": str(ROOT), "WORKFLOW_CONFIG": str(workflow), "PROJECTS_DIR": str(tmp_path / "projects"),
                "LOGS_DIR": str(mount / "logs" if what == "logs" else tmp_path / "logs"),
                "DATABASE": str(mount / "runs.sqlite3" if what == "data" else tmp_path / "runs.sqlite3"),
                "TOKEN": None, "NVIDIA_SMI": ""}
    shell = 'mount -t tmpfs -o size=1m tmpfs "$1" && shift && exec "$@"'
    out = subprocess.run(["unshare", "-rm", "sh", "-c", shell, "sh", str(mount), sys.executable, "-c",
                          FULL_DISK_SCRIPT, json.dumps(settings), str(mount)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_full_disk_under_logs_fails_the_run_in_words_and_leaves_no_phantom(tmp_path):
    result = run_on_a_full_disk(tmp_path, "logs")
    for answer in result["answers"]:
        assert answer["status"] == 202
        assert answer["state"]["status"] == "failed"
        assert "No space left on device" in answer["state"]["reason"], answer["state"]["reason"]
    assert result["running"] == 0 and result["cancel"] == 409


def test_a_full_disk_under_the_database_refuses_the_run_in_words(tmp_path):
    result = run_on_a_full_disk(tmp_path, "data")
    for answer in result["answers"]:
        assert answer["status"] == 503, answer
        assert "the history database cannot record a new run" in answer["body"]["error"]
    assert result["running"] == 0


@pytest.fixture
def locked_runner(tmp_path):
    """A runner on a history whose SQLite busy wait is short, and a second
    connection to lock it with, as another program would."""
    db = tmp_path / "runs.sqlite3"
    (tmp_path / "projects").mkdir()
    workflow = write_workflow(tmp_path / "wf.json", [step("s", "progress.py", "--items", "1", "--delay", "0.5")])
    made = []

    def make():
        store = RunStore(db, busy_timeout=0.3)
        runner = Runner(load_registry(workflow, ROOT), store, tmp_path / "logs", tmp_path / "projects", EventBus(),
                        logging.getLogger("test-locked"))
        runner.record.retry_s = 0.2
        made.append((runner, store))
        return runner, store

    other = sqlite3.connect(db, timeout=0, isolation_level=None)
    yield make, other
    other.close()
    for runner, store in made:
        runner.shutdown(timeout=10)
        store.close()


def test_a_run_that_ends_while_the_database_is_locked_keeps_its_end(locked_runner):
    make, other = locked_runner
    runner, store = make()
    run = runner.launch("s")
    other.execute("BEGIN EXCLUSIVE")  # another program holds the database across the run's end
    try:
        assert run.done.wait(30)
        assert runner.latest("s").status.value == "succeeded"  # the live state is right at once
        started = time.monotonic()
        assert store.get(run.id)["status"] == "running"  # reads are not blocked: the end is not written yet
        assert time.monotonic() - started < 0.3 * 3, "a read waited for the writer's lock"
        assert runner.record.pending() == [run.id]
    finally:
        other.execute("COMMIT")
    deadline = time.monotonic() + 10
    while store.get(run.id)["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.get(run.id)["status"] == "succeeded" and runner.record.pending() == []


def test_an_end_the_database_never_took_is_read_back_from_the_run_s_log(locked_runner):
    make, other = locked_runner
    runner, store = make()
    run = runner.launch("s")
    other.execute("BEGIN EXCLUSIVE")
    try:
        assert run.done.wait(30)
        runner.shutdown(timeout=5)  # the dashboard stops before the lock is released
        store.close()
    finally:
        other.execute("COMMIT")
    with closing(RunStore(store.path)) as check:
        assert check.get(run.id)["status"] == "running"
    again, again_store = make()
    assert again.recover() == [run.id]
    row = again_store.get(run.id)
    assert row["status"] == "succeeded" and "interrupted" not in row["reason"]


def test_a_database_damaged_while_running_keeps_the_pages_up_and_says_so(make_app, paths):
    app = make_app([step("s", "progress.py", "--items", "1")])
    svc = app.extensions["dashboard"]
    run = svc.runner.launch("s")
    assert run.done.wait(30)
    for _ in range(200):
        svc.store.create("s", 1.0, argv=["x" * 300])
    with sqlite3.connect(paths["db"]) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = db.execute("PRAGMA page_size").fetchone()[0]
    size = paths["db"].stat().st_size
    with open(paths["db"], "r+b") as f:  # garbage over the table's pages, past the schema
        f.seek(2 * page)
        f.write(b"\xff" * (size - 3 * page))
    svc.store._reader = None  # a fresh reading connection, as after a cache eviction
    client = app.test_client()
    for url in ("/", "/history", "/api/steps", "/api/runs", "/api/steps/s"):
        assert client.get(url).status_code == 200, url
    assert svc.store.problem and "cannot be read" in svc.store.problem
    assert "move the file aside" in client.get("/").get_data(as_text=True)
    # Steps still run: shown live, with their log, though the history cannot keep them.
    answer = client.post("/api/steps/s/run")
    assert answer.status_code == 202, answer.get_json()
    again = svc.runner.latest("s")
    assert again.id != run.id and again.done.wait(30) and again.status.value == "succeeded"
    assert client.get(f"/api/runs/{again.id}").get_json()["status"] == "succeeded"
