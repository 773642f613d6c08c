"""The JSON API through Flask's test client, with real runs behind it."""
import json
import threading
import time

import pytest
from dash_support import step, wait_for


def wait_run(client, run_id, timeout=20):
    def ended():
        data = client.get(f"/api/runs/{run_id}").get_json()
        return data if data["status"] != "running" else None
    return wait_for(ended, timeout=timeout, message=f"run {run_id} to end")


def test_steps_lists_every_step_with_its_state(client):
    data = client.get("/api/steps").get_json()
    assert [s["id"] for s in data["steps"]] == ["progress", "fail"]
    first = data["steps"][0]
    for key in ("name", "description", "venv", "resources", "problems", "fix", "ready", "running", "blocked", "run"):
        assert key in first
    assert first["ready"] is True and first["run"] is None
    assert data["server_time"] == pytest.approx(time.time(), abs=5)
    assert client.get("/api/steps/progress").get_json()["id"] == "progress"
    assert client.get("/api/steps/nope").status_code == 404


def test_run_gives_202_and_the_run_ends_with_its_counters(client):
    response = client.post("/api/steps/progress/run")
    assert response.status_code == 202
    run_id = response.get_json()["run_id"]
    assert response.headers["Location"].endswith(f"/api/runs/{run_id}")
    data = wait_run(client, run_id)
    assert data["status"] == "succeeded" and data["return_code"] == 0 and data["reason"] == "exit code 0"
    assert (data["total"], data["succeeded"], data["failed"]) == (3, 3, 0)
    assert data["percent"] == 100.0
    assert data["elapsed_s"] > 0 and data["started_at"] <= data["ended_at"]
    state = client.get("/api/steps/progress").get_json()
    assert state["run"]["id"] == run_id and state["running"] is False


def test_failed_run_says_why(client):
    run_id = client.post("/api/steps/fail/run").get_json()["run_id"]
    data = wait_run(client, run_id)
    assert data["status"] == "failed"
    assert data["return_code"] == 3
    assert data["reason"] == "exit code 3 (test failure)"


def test_simultaneous_launches_give_one_202_and_one_409(make_app):
    app = make_app([step("s", "sleeper.py")])
    barrier = threading.Barrier(2)
    codes = []

    def launch():
        c = app.test_client()
        barrier.wait()
        codes.append(c.post("/api/steps/s/run"))

    threads = [threading.Thread(target=launch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in codes) == [202, 409]
    refused = next(r for r in codes if r.status_code == 409).get_json()
    accepted = next(r for r in codes if r.status_code == 202).get_json()
    assert refused["run_id"] == accepted["run_id"] and "already running" in refused["error"]
    client = app.test_client()
    assert client.post("/api/steps/s/cancel").status_code == 202
    assert wait_run(client, accepted["run_id"])["status"] == "cancelled"


def test_a_busy_resource_is_a_409_that_names_it(make_app):
    app = make_app([step("a", "sleeper.py", resources=["gpu"]), step("b", "sleeper.py", resources=["gpu"])])
    client = app.test_client()
    run_id = client.post("/api/steps/a/run").get_json()["run_id"]
    refused = client.post("/api/steps/b/run")
    assert refused.status_code == 409
    assert "resource 'gpu' is in use by Test a" in refused.get_json()["error"]
    assert client.get("/api/steps/b").get_json()["blocked"].startswith("resource 'gpu'")
    client.post("/api/steps/a/cancel")
    wait_run(client, run_id)
    assert client.get("/api/steps/b").get_json()["blocked"] is None


def test_the_event_stream_tells_a_step_when_its_resource_frees(make_app):
    app = make_app([step("a", "sleeper.py", resources=["gpu"]), step("b", "sleeper.py", resources=["gpu"])])
    response = app.test_client().get("/api/events", buffered=False)
    try:
        read_events(response, lambda name, data: name == "snapshot")
        client = app.test_client()
        client.post("/api/steps/a/run")
        read_events(response, lambda name, data: name == "step" and data["id"] == "b" and data["blocked"])
        client.post("/api/steps/a/cancel")
        read_events(response, lambda name, data: name == "step" and data["id"] == "b" and data["blocked"] is None)
    finally:
        response.close()


def test_cancel(make_app):
    client = make_app([step("s", "sleeper.py")]).test_client()
    assert client.post("/api/steps/s/cancel").status_code == 409
    run_id = client.post("/api/steps/s/run").get_json()["run_id"]
    wait_for(lambda: client.get(f"/api/runs/{run_id}").get_json()["total"] == 1, message="the first line")
    response = client.post("/api/steps/s/cancel")
    assert response.status_code == 202 and response.get_json()["run_id"] == run_id
    data = wait_run(client, run_id)
    assert data["status"] == "cancelled" and data["reason"] == "cancelled by the user"
    assert client.post("/api/steps/nope/cancel").status_code == 404


def test_unknown_step_and_run_are_404_in_json(client):
    for response in (client.post("/api/steps/nope/run"), client.get("/api/runs/999"),
                     client.get("/api/runs/999/log"), client.get("/api/nothing-here")):
        assert response.status_code == 404
        assert "error" in response.get_json()
    assert client.get("/api/steps/progress/run").status_code == 405


def test_a_broken_step_shows_its_problem_instead_of_a_500(make_app):
    app = make_app([
        step("ok", "progress.py"),
        step("bad", "progress.py", progress_patterns={"total": "^TOTAL: (?P<total>\\d+"}),
        step("novenv", "progress.py", venv="ghost_env"),
    ])
    client = app.test_client()
    steps = {s["id"]: s for s in client.get("/api/steps").get_json()["steps"]}
    assert steps["ok"]["ready"]
    assert not steps["bad"]["ready"] and "bad regex" in steps["bad"]["problems"][0]
    assert "venv 'ghost_env' is unknown" in steps["novenv"]["problems"][0]
    response = client.post("/api/steps/bad/run")
    assert response.status_code == 422 and "bad regex" in response.get_json()["error"]
    page = client.get("/")
    assert page.status_code == 200 and "bad regex" in page.get_data(as_text=True)


def test_missing_venv_is_a_422_with_the_command_that_creates_it(make_app, paths):
    from dash_support import write_workflow
    write_workflow(paths["workflow"], [step("v", "progress.py", venv="ghost_env")],
                   {"env": {}, "ghost_env": {"setup": "make setup"}})
    client = make_app(None).test_client()
    state = client.get("/api/steps/v").get_json()
    assert state["ready"] is False and state["fix"] == "make setup"
    response = client.post("/api/steps/v/run")
    body = response.get_json()
    assert response.status_code == 422 and body["fix"] == "make setup"
    assert "ghost_env/bin/python not found" in body["problems"][0]


def test_problems_only_the_disk_can_tell_are_in_the_app_log_at_start_up(make_app, paths):
    from dash_support import write_workflow
    write_workflow(paths["workflow"], [dict(step("gone", "progress.py"), script="tests/dashboard/steps/nope.py"),
                                       step("v", "progress.py", venv="ghost_env")],
                   {"env": {}, "ghost_env": {"setup": "make setup"}})
    make_app(None)
    text = (paths["logs"] / "app.log").read_text()
    assert "step gone cannot start: script tests/dashboard/steps/nope.py does not exist" in text
    assert "step v cannot start: virtualenv ghost_env/ is missing" in text


def test_a_restarted_server_still_shows_the_last_run_s_failures(make_app):
    app = make_app([step("p", "progress.py", "--items", "3", "--fail", "2")])
    client = app.test_client()
    run_id = client.post("/api/steps/p/run").get_json()["run_id"]
    app.extensions["dashboard"].runner.latest("p").done.wait(20)
    app.extensions["dashboard"].close()
    again = make_app(None).test_client()  # a new server on the same database
    run = again.get("/api/steps/p").get_json()["run"]
    assert run["id"] == run_id and run["failed"] == 1
    assert [f["item"] for f in run["failures"]] == ["demo/video 2.mp4"]
    assert run["last_success"]["item"] == "demo/video 3.mp4"


def test_a_run_has_one_shape_live_or_from_the_history(make_app):
    app = make_app([step("p", "progress.py", "--items", "3", "--fail", "2")])
    client = app.test_client()
    run_id = client.post("/api/steps/p/run").get_json()["run_id"]
    ended = wait_run(client, run_id)
    assert isinstance(ended["version"], int), "the runner's own run, not its history row"
    app.extensions["dashboard"].close()
    again = make_app(None).test_client()  # a new server: only the history knows the run
    listed = again.get("/api/runs").get_json()["runs"][0]
    card = again.get("/api/steps/p").get_json()["run"]
    alone = again.get(f"/api/runs/{run_id}").get_json()
    assert listed["version"] is None and listed["id"] == run_id
    assert list(ended) == list(listed) == list(card) == list(alone)
    assert ended["step_name"] == listed["step_name"] == card["step_name"] == "Test p"
    # What only a live run knows (the item in progress, the version) is left out of the comparison.
    live_only = {"version", "index", "item_done", "item_total", "in_progress", "last_lines"}
    assert {k: v for k, v in listed.items() if k not in live_only} == \
        {k: v for k, v in ended.items() if k not in live_only}
    assert listed == alone
    # The card reads its last lines back from the log: the ones the live run showed.
    assert card["last_lines"] == ended["last_lines"] and listed["last_lines"] == []


def test_a_history_file_of_the_first_schema_is_upgraded_in_place(tmp_path):
    import sqlite3
    from dashboard.history import RunStore
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript("""CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, step_id TEXT NOT NULL,
        status TEXT NOT NULL, trigger TEXT NOT NULL DEFAULT 'user', sequence_id INTEGER,
        started_at REAL NOT NULL, ended_at REAL, return_code INTEGER, reason TEXT, total INTEGER,
        succeeded INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
        skipped INTEGER NOT NULL DEFAULT 0, fraction REAL, current_item TEXT,
        lines INTEGER NOT NULL DEFAULT 0, log_path TEXT, argv TEXT, pid INTEGER,
        pid_started_at REAL, updated_at REAL);
        INSERT INTO runs (step_id, status, started_at) VALUES ('step3', 'succeeded', 1.0);
        PRAGMA user_version=1;""")
    db.close()
    store = RunStore(path)
    try:
        old = store.get(1)
        assert old["status"] == "succeeded" and old["failures"] is None
        store.update(1, failures=[{"index": 1, "item": "a.mp4", "detail": "broken"}])
        assert store.get(1)["failures"] == [{"index": 1, "item": "a.mp4", "detail": "broken"}]
    finally:
        store.close()


def test_history_lists_runs_newest_first_with_filters(client):
    ids = []
    for sid in ("progress", "fail", "progress"):
        run_id = client.post(f"/api/steps/{sid}/run").get_json()["run_id"]
        wait_run(client, run_id)
        ids.append(run_id)
    data = client.get("/api/runs").get_json()
    assert [r["id"] for r in data["runs"]] == ids[::-1] and data["total"] == 3
    data = client.get("/api/runs?step=progress").get_json()
    assert [r["id"] for r in data["runs"]] == [ids[2], ids[0]]
    data = client.get("/api/runs?status=failed").get_json()
    assert [r["id"] for r in data["runs"]] == [ids[1]] and data["runs"][0]["reason"].startswith("exit code 3")
    data = client.get("/api/runs?limit=1&offset=1").get_json()
    assert [r["id"] for r in data["runs"]] == [ids[1]]
    assert client.get("/api/runs?status=weird").status_code == 400
    assert client.get("/api/runs?limit=x").status_code == 400


def test_run_log_tail_filter_level_and_follow(make_app):
    client = make_app([step("p", "progress.py", "--items", "5", "--fail", "2", "--frames", "2")]).test_client()
    run_id = client.post("/api/steps/p/run").get_json()["run_id"]
    wait_run(client, run_id)
    data = client.get(f"/api/runs/{run_id}/log?tail=2").get_json()
    texts = [line["text"] for line in data["lines"]]
    assert texts[0] == "SUMMARY: 4/5 succeeded, 1 failed, 0 skipped"
    assert texts[1].startswith("[dashboard] ended: failed (exit code 1)")
    data = client.get(f"/api/runs/{run_id}/log?tail=100&filter=video%204").get_json()
    assert [line["text"] for line in data["lines"]][0] == "PROCESSING_VIDEO: 4/5: demo/video 4.mp4"
    assert all("video 4" in line["text"] for line in data["lines"])
    errors = client.get(f"/api/runs/{run_id}/log?level=error").get_json()["lines"]
    assert [e["text"] for e in errors] == ["FAILED: 2/5: demo/video 2.mp4: cannot read video: test failure"]
    assert errors[0]["level"] == "error"
    end = data["end"]
    assert client.get(f"/api/runs/{run_id}/log?after={end}").get_json()["lines"] == []
    assert client.get(f"/api/runs/{run_id}/log?after=abc").status_code == 400


def test_run_all_runs_the_steps_in_order(make_app):
    client = make_app([step("one", "progress.py", "--items", "1"), step("two", "progress.py", "--items", "2"),
                       step("skip", "sleeper.py", run_all=False)]).test_client()
    response = client.post("/api/run-all")
    assert response.status_code == 202
    seq = response.get_json()["sequence"]
    assert seq["steps"] == ["one", "two"]
    done = wait_for(lambda: (lambda s: s if s["status"] != "running" else None)(client.get("/api/run-all").get_json()["current"]),
                    timeout=30, message="run all to end")
    assert done["status"] == "succeeded" and set(done["runs"]) == {"one", "two"}
    runs = client.get("/api/runs").get_json()["runs"]
    assert [r["step_id"] for r in runs] == ["two", "one"]
    assert all(r["trigger"] == "run-all" and r["sequence_id"] == seq["id"] for r in runs)
    assert runs[0]["started_at"] >= runs[1]["ended_at"]


def test_run_all_stops_at_the_first_failure(make_app):
    client = make_app([step("one", "progress.py", "--items", "1"), step("bad", "exit_code.py", "3"),
                       step("never", "progress.py")]).test_client()
    client.post("/api/run-all")
    done = wait_for(lambda: (lambda s: s if s["status"] != "running" else None)(client.get("/api/run-all").get_json()["current"]),
                    timeout=30, message="run all to end")
    assert done["status"] == "failed"
    assert done["reason"] == "stopped: Test bad failed (exit code 3)"
    assert "never" not in done["runs"]
    assert client.get("/api/steps/never").get_json()["run"] is None


def test_run_all_cancel_and_conflict(make_app):
    client = make_app([step("long", "sleeper.py"), step("after", "progress.py")]).test_client()
    assert client.post("/api/run-all/cancel").status_code == 409
    client.post("/api/run-all")
    assert client.post("/api/run-all").status_code == 409
    wait_for(lambda: client.get("/api/steps/long").get_json()["running"], message="the first step to start")
    assert client.post("/api/run-all/cancel").status_code == 202
    done = wait_for(lambda: (lambda s: s if s["status"] != "running" else None)(client.get("/api/run-all").get_json()["current"]),
                    timeout=20, message="run all to end")
    assert done["status"] == "cancelled"
    assert client.get("/api/steps/after").get_json()["run"] is None


def test_run_all_waits_for_a_busy_resource(make_app):
    client = make_app([step("gpu1", "progress.py", "--items", "1", resources=["gpu"]),
                       step("holder", "sleeper.py", resources=["gpu"], run_all=False)]).test_client()
    holder = client.post("/api/steps/holder/run").get_json()["run_id"]
    client.post("/api/run-all")
    waiting = wait_for(lambda: client.get("/api/run-all").get_json()["current"]["waiting"], message="the wait")
    assert "resource 'gpu' is in use by Test holder" in waiting
    client.post("/api/steps/holder/cancel")
    wait_run(client, holder)
    done = wait_for(lambda: (lambda s: s if s["status"] != "running" else None)(client.get("/api/run-all").get_json()["current"]),
                    timeout=20, message="run all to end")
    assert done["status"] == "succeeded"


def read_events(response, until, timeout=15):
    """Parse SSE events from a streamed test-client response until ``until(name, data)``."""
    buffer = ""
    deadline = time.monotonic() + timeout
    events = []
    for chunk in response.response:
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            name, data = None, None
            for line in block.split("\n"):
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
            if name:
                events.append((name, data))
                if until(name, data):
                    return events
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"no matching event; got {[e[0] for e in events]}")


def test_event_stream_sends_a_snapshot_then_live_changes(app):
    client = app.test_client()
    response = client.get("/api/events", buffered=False)
    try:
        assert response.mimetype == "text/event-stream"
        first = read_events(response, lambda name, data: name == "snapshot")
        assert [s["id"] for s in first[-1][1]["steps"]] == ["progress", "fail"]
        run_id = app.test_client().post("/api/steps/progress/run").get_json()["run_id"]
        events = read_events(response, lambda name, data: name == "step" and data["run"] and
                             data["run"]["id"] == run_id and data["run"]["status"] == "succeeded")
        assert events[-1][1]["run"]["percent"] == 100.0
    finally:
        response.close()


def test_system_and_projects(client, paths):
    (paths["projects"] / "a" / "b").mkdir(parents=True)
    (paths["projects"] / "a" / "b" / "clip.MOV").write_bytes(b"x" * 10)
    (paths["projects"] / "notes.txt").write_text("not a video")
    (paths["projects"] / "top.mp4").write_bytes(b"")
    system = client.get("/api/system").get_json()
    assert 0 <= system["cpu_percent"] <= 100 * system["cpu_count"]
    assert system["memory_total"] > system["memory_used"] > 0
    assert system["gpus"] == [] and system["gpu_error"] is None
    projects = client.get("/api/projects").get_json()
    assert [v["path"] for v in projects["videos"]] == ["a/b/clip.MOV", "top.mp4"]
    assert projects["videos"][0]["size"] == 10


def test_nvidia_smi_output_is_parsed():
    from dashboard.system import parse_nvidia_smi
    text = "NVIDIA H100 80GB HBM3, 37, 1024, 81559\nNVIDIA GeForce RTX 3090, Ti, [N/A], 10, 24576\n"
    gpus = parse_nvidia_smi(text)
    assert gpus[0] == {"name": "NVIDIA H100 80GB HBM3", "utilization": 37.0, "memory_used_mib": 1024.0,
                       "memory_total_mib": 81559.0}
    assert gpus[1]["name"] == "NVIDIA GeForce RTX 3090, Ti" and gpus[1]["utilization"] is None


def test_a_slow_nvidia_smi_never_holds_up_a_caller(tmp_path):
    """The sampler answers at once; the GPU figures follow when nvidia-smi does."""
    import time
    from dashboard.system import SystemSampler
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\nsleep 1.5\necho 'Fake GPU, 55, 2048, 81559'\n")
    fake.chmod(0o755)
    sampler = SystemSampler(tmp_path, nvidia_smi=str(fake), ttl=0.0)
    started = time.monotonic()
    first = sampler.sample()
    assert time.monotonic() - started < 1.0  # well under the fake's 1.5 s
    assert first["gpus"] == [] and first["memory_total"] > 0
    deadline = time.monotonic() + 20
    while not sampler.sample()["gpus"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sampler.sample()["gpus"] == [{"name": "Fake GPU", "utilization": 55.0, "memory_used_mib": 2048.0,
                                         "memory_total_mib": 81559.0}]
