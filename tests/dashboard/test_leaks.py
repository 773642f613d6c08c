"""After many runs, threads, open files and child processes are back where they started."""
import http.client
import threading
import time

import psutil
from dash_support import step, wait_for


def step_processes() -> int:
    """Live processes started by this test's steps, wherever they are in the
    process tree (an orphaned daemon is no child of ours any more); the
    session's browser, also a child of this process, is not counted."""
    from dashboard.launcher import INSTANCE, RUN_TAG_ENV
    count = 0
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get(RUN_TAG_ENV, "").startswith(INSTANCE + "-") \
                    and proc.status() != psutil.STATUS_ZOMBIE:
                count += 1
        except (psutil.Error, OSError):
            continue
    return count


def counts():
    me = psutil.Process()
    return {
        "threads": threading.active_count(),
        "fds": me.num_fds(),
        "step_processes": step_processes(),
        "unreaped_children": sum(1 for c in me.children() if _status(c) == psutil.STATUS_ZOMBIE),
    }


def _status(proc):
    try:
        return proc.status()
    except psutil.Error:
        return None


def settled(baseline, slack=0):
    now = counts()
    return now if all(now[k] <= baseline[k] + slack for k in baseline) else None


def test_fifty_runs_leave_nothing_behind(make_app):
    app = make_app([
        step("ok", "progress.py", "--items", "2"),
        step("bad", "exit_code.py", "3"),
        step("tree", "grandchild.py", "--exit"),
        step("stubborn", "ignore_term.py", cancel_grace_s=0.2),
    ])
    client = app.test_client()
    svc = app.extensions["dashboard"]

    def run(step_id, cancel=False):
        response = client.post(f"/api/steps/{step_id}/run")
        assert response.status_code == 202
        run = svc.runner.get(response.get_json()["run_id"])
        if cancel:
            wait_for(lambda: run.snapshot()["lines"] > 0, message="the step's first line")
            assert client.post(f"/api/steps/{step_id}/cancel").status_code == 202
        assert run.done.wait(20)
        return run

    before = counts()
    assert before["step_processes"] == 0
    for step_id in ("ok", "bad", "tree"):  # warm-up: first-use caches are not leaks
        run(step_id)
    wait_for(lambda: counts()["step_processes"] == 0, timeout=10, message="warm-up to settle")
    baseline = counts()

    statuses = []
    for i in range(50):
        kind = ("ok", "bad", "tree", "stubborn")[i % 4]
        statuses.append(run(kind, cancel=kind == "stubborn").status.value)
    assert statuses.count("succeeded") == 25 and statuses.count("failed") == 13 and statuses.count("cancelled") == 12
    after = wait_for(lambda: settled(baseline), timeout=15, message=f"counts back to {baseline}")
    assert after["step_processes"] == 0
    assert svc.store.find(limit=1)[1] == 53


def test_event_streams_that_close_release_their_threads(live_server):
    server = live_server([step("ok", "progress.py")])
    host, port = server.url.split("//")[1].split(":")
    # One stream first, so that lazily created server state is in the baseline.
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", "/api/events")
    response = conn.getresponse()
    response.read1(100)
    response.close()
    conn.close()
    time.sleep(1.5)
    baseline = counts()
    for _ in range(10):
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("GET", "/api/events")
        response = conn.getresponse()
        assert response.status == 200
        assert b"snapshot" in response.read1(65536) + response.read1(65536)
        response.close()  # the response holds the socket too
        conn.close()
    # A closed stream is noticed at its next write (a heartbeat at most a second later).
    wait_for(lambda: settled(baseline, slack=1), timeout=10, message="stream threads to end")
    assert server.app.extensions["sse_clients"].count <= 1
