"""Faults that used to lose runs (issue 10): a second dashboard on the same
history, damaged or unusable databases and logs folders, the token in
/proc/<pid>/environ. Real app.py processes, real SQLite files."""
import os
from contextlib import closing
import sqlite3
import subprocess
import sys

import pytest
from dash_support import ROOT, step, wait_for, write_workflow
from test_app_process import TOKEN, alive, app_process  # noqa: F401 (a fixture)
from test_projects_folder import DROP_FILE_OVERRIDES

from dashboard.history import SCHEMA_VERSION, RunStore


def start_app(paths, *args, env=None, as_user=False, timeout=60):
    """app.py run to its end (it is expected to stop at start-up)."""
    command = [sys.executable, str(ROOT / "app.py"), "--port", "0", "--config", str(paths["workflow"]),
               "--logs-dir", str(paths["logs"]), "--database", str(paths["db"]),
               "--projects-dir", str(paths["projects"]), *args]
    prefix = DROP_FILE_OVERRIDES if as_user and os.geteuid() == 0 else []
    full_env = {k: v for k, v in os.environ.items() if k != "DASHBOARD_TOKEN"}
    full_env.update(env or {})
    return subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=timeout, env=full_env)


def one_line_refusal(out, *words):
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_a_second_dashboard_on_the_same_history_refuses_and_the_first_one_s_run_goes_on(paths, app_process):
    write_workflow(paths["workflow"], [step("s", "sleeper.py")])
    first = app_process()
    status, body = first.call("POST", "/api/steps/s/run")
    run_id = body["run_id"]
    wait_for(lambda: first.call("GET", f"/api/runs/{run_id}")[1]["total"] == 1, message="the run to start")
    child = psutil_children(first.proc.pid)
    line = one_line_refusal(start_app(paths), "another dashboard", f"pid {first.proc.pid}", first.url,
                            str(paths["db"]))
    assert "--database" in line
    assert all(alive(pid) for pid in child), "the second dashboard ended the first one's step"
    assert first.call("GET", f"/api/runs/{run_id}")[1]["status"] == "running"
    with closing(RunStore(paths["db"])) as store:
        assert store.get(run_id)["status"] == "running"
    log = next((paths["logs"] / "s").glob(f"run_{run_id:05d}_*.log")).read_text()
    assert "ended:" not in log and "interrupted" not in log


def psutil_children(pid):
    import psutil
    return [p.pid for p in psutil.Process(pid).children(recursive=True)]


def test_the_history_lock_is_free_again_after_a_kill_9(paths, app_process):
    write_workflow(paths["workflow"], [step("s", "sleeper.py")])
    first = app_process()
    first.proc.kill()
    first.proc.wait(10)
    second = app_process()
    assert second.call("GET", "/api/health")[0] == 200


def make_history(path, runs=300):
    with closing(RunStore(path)) as store:
        for i in range(runs):
            store.create("s", 1000.0 + i, argv=["x" * 200])


def corrupt_one_page(path):
    """Garbage over one page in the middle of the file (not the header)."""
    with sqlite3.connect(path) as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek((size // page_size // 2) * page_size)
        f.write(os.urandom(page_size))


@pytest.mark.parametrize("damage, words", [
    ("garbage", ["not an SQLite file", "move it aside"]),
    ("truncated", ["damaged", "move it aside"]),
    ("one bad page", ["damaged", "move it aside"]),
    ("newer schema", [f"schema {SCHEMA_VERSION + 1}", "newer dashboard"]),
    ("a folder", ["is a folder", "--database"]),
])
def test_a_bad_database_is_one_line_and_exit_2(paths, damage, words):
    write_workflow(paths["workflow"], [step("s", "sleeper.py")])
    db = paths["db"]
    db.parent.mkdir(parents=True, exist_ok=True)
    if damage == "garbage":
        db.write_bytes(os.urandom(50_000))
    elif damage == "a folder":
        db.mkdir()
    else:
        make_history(db)
        if damage == "truncated":
            with sqlite3.connect(db) as c:
                c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            os.truncate(db, db.stat().st_size // 2)
        elif damage == "one bad page":
            corrupt_one_page(db)
        else:
            with sqlite3.connect(db) as c:
                c.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    one_line_refusal(start_app(paths), str(db), *words)


def test_a_read_only_database_and_an_unwritable_logs_folder(paths):
    write_workflow(paths["workflow"], [step("s", "sleeper.py")])
    make_history(paths["db"], runs=3)
    paths["db"].chmod(0o444)
    try:
        one_line_refusal(start_app(paths, as_user=True), str(paths["db"]), "not readable and writable")
    finally:
        paths["db"].chmod(0o644)
    paths["logs"].mkdir(exist_ok=True)
    paths["logs"].chmod(0o555)
    try:
        one_line_refusal(start_app(paths, as_user=True), str(paths["logs"]), "not writable")
    finally:
        paths["logs"].chmod(0o755)


def test_the_token_is_not_left_in_the_dashboard_s_environment(paths, app_process):
    write_workflow(paths["workflow"], [step("s", "sleeper.py")])
    server = app_process(env={"DASHBOARD_TOKEN": TOKEN})
    environ = open(f"/proc/{server.proc.pid}/environ", "rb").read()
    assert TOKEN.encode() not in environ and b"DASHBOARD_TOKEN=" not in environ
    assert server.call("GET", "/api/steps")[0] == 401
    assert server.call("GET", "/api/steps", {"Authorization": f"Bearer {TOKEN}"})[0] == 200


def test_the_token_can_come_from_a_file(paths, app_process, tmp_path):
    write_workflow(paths["workflow"], [step("s", "sleeper.py")])
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    server = app_process(env={"DASHBOARD_TOKEN_FILE": str(secret)})
    assert server.call("GET", "/api/steps")[0] == 401
    assert server.call("GET", "/api/steps", {"Authorization": f"Bearer {TOKEN}"})[0] == 200


def test_a_new_event_stream_ends_the_oldest_when_every_slot_is_taken(make_app, monkeypatch):
    from dashboard.web import events
    monkeypatch.setattr(events, "EVICT_AFTER_S", 0.3)
    app = make_app(SSE_MAX_CLIENTS=2)
    client = app.test_client()
    first, second = (client.get("/api/events", buffered=False) for _ in range(2))
    try:
        for stream in (first, second):
            next(stream.response)  # open: the "retry:" line
        clients = app.extensions["sse_clients"]
        assert clients.count == 2
        assert client.get("/api/events", buffered=False).status_code == 503  # the oldest is too young to end
        import time
        time.sleep(0.4)
        third = client.get("/api/events", buffered=False)
        assert third.status_code == 200
        b"".join(first.response)  # returns only because the oldest stream was ended
        assert clients.count == 2 and app.extensions["dashboard"].bus.seq > 0
        third.close()
    finally:
        first.close()
        second.close()


def daemon_pid(server, run_id):
    lines = wait_for(lambda: [x for x in server.call("GET", f"/api/runs/{run_id}")[1]["last_lines"]
                              if x.startswith("DAEMON")], timeout=20, message="the daemon's pid")
    return int(lines[0].split()[1])


def test_a_process_that_left_the_session_with_an_empty_environment_is_ended_with_its_run(paths, app_process):
    write_workflow(paths["workflow"], [step("d", "scrubbed_daemon.py")])
    server = app_process()
    run_id = server.call("POST", "/api/steps/d/run")[1]["run_id"]
    daemon = daemon_pid(server, run_id)
    wait_for(lambda: server.call("GET", f"/api/runs/{run_id}")[1]["status"] != "running", timeout=30,
             message="the run to end")
    wait_for(lambda: not alive(daemon), timeout=15, message="the daemon to be ended")
    log = next((paths["logs"] / "d").glob(f"run_{run_id:05d}_*.log")).read_text()
    assert "the step left 1 process(es) running" in log and f"{daemon} (python" in log


@pytest.mark.parametrize("step_exits_meanwhile", [False, True])
def test_after_a_kill_9_of_the_server_the_restart_ends_the_run_s_daemon_too(paths, app_process, step_exits_meanwhile):
    write_workflow(paths["workflow"], [step("d", "scrubbed_daemon.py", "--stay", "4" if step_exits_meanwhile else "600")])
    first = app_process()
    run_id = first.call("POST", "/api/steps/d/run")[1]["run_id"]
    daemon = daemon_pid(first, run_id)

    def recorded():
        with closing(sqlite3.connect(paths["db"])) as db:
            return db.execute("SELECT pid, tracking FROM runs WHERE id = ?", (run_id,)).fetchone()

    wait_for(lambda: str(daemon) in (recorded()[1] or ""), timeout=15, message="the daemon to be recorded")
    leader = recorded()[0]
    first.proc.kill()
    first.proc.wait(10)
    if step_exits_meanwhile:  # then nothing links the daemon to the run but the history
        wait_for(lambda: not alive(leader), timeout=20, message="the step to exit")
    assert alive(daemon)
    second = app_process()
    assert second.call("GET", f"/api/runs/{run_id}")[1]["status"] == "interrupted"
    wait_for(lambda: not alive(daemon) and not alive(leader), timeout=15, message="the daemon to be ended")


def test_a_history_whose_lock_cannot_be_made_is_one_line(paths, tmp_path):
    write_workflow(paths["workflow"], [step("s", "sleeper.py")])
    (tmp_path / "afile").write_text("x")
    paths["db"] = tmp_path / "afile" / "runs.sqlite3"
    one_line_refusal(start_app(paths), "cannot create", "--database")


def test_a_healthy_history_in_a_folder_with_an_odd_name_is_checked_as_it_is(paths, tmp_path, app_process):
    # '?' and '%25' in the path must not be read as parts of an SQLite URI.
    write_workflow(paths["workflow"], [step("s", "sleeper.py")])
    folder = tmp_path / "we?ird %25"
    folder.mkdir()
    paths["db"] = folder / "runs.sqlite3"
    make_history(paths["db"], runs=3)
    assert app_process().call("GET", "/api/runs")[1]["total"] == 3
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("we")) == ["we?ird %25"]


def test_make_run_twice_a_busy_port_names_the_dashboard_that_has_it(paths, app_process):
    write_workflow(paths["workflow"], [step("s", "sleeper.py")])
    first = app_process()
    port = first.url.rsplit(":", 1)[1]
    out = start_app(paths, "--port", port)  # the same port and the same history, as `make run` twice
    one_line_refusal(out, f"cannot listen on 127.0.0.1:{port}", f"another dashboard, pid {first.proc.pid}")
