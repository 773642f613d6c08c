"""app.py as a real server process: start-up checks, a crash and a restart, a clean stop."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import psutil
import pytest
from dash_support import ROOT, step, wait_for, write_workflow

TOKEN = "process-test-token-0123456789"


class AppProcess:
    def __init__(self, paths, *args, env=None):
        command = [sys.executable, str(ROOT / "app.py"), "--port", "0", "--config", str(paths["workflow"]),
                   "--logs-dir", str(paths["logs"]), "--database", str(paths["db"]),
                   "--projects-dir", str(paths["projects"]), *args]
        full_env = {k: v for k, v in os.environ.items() if k != "DASHBOARD_TOKEN"}
        full_env.update(env or {})
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)
        line = self.proc.stdout.readline()
        found = re.search(r"http://[^:]+:(\d+)/", line)
        if not found:
            self.proc.kill()
            raise AssertionError(f"no address in {line!r}; stderr: {self.proc.stderr.read()}")
        self.url = f"http://127.0.0.1:{found.group(1)}"

    def call(self, method, path, headers=None):
        request = urllib.request.Request(self.url + path, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
def app_process(paths):
    started = []

    def start(*args, env=None):
        p = AppProcess(paths, *args, env=env)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_non_loopback_host_without_a_token_does_not_start(paths):
    write_workflow(paths["workflow"], [step("s", "sleeper.py")])
    env = {k: v for k, v in os.environ.items() if k != "DASHBOARD_TOKEN"}
    out = subprocess.run([sys.executable, str(ROOT / "app.py"), "--host", "0.0.0.0", "--port", "0",
                          "--logs-dir", str(paths["logs"]), "--database", str(paths["db"])],
                         capture_output=True, text=True, timeout=30, env=env)
    assert out.returncode == 2
    assert "needs an access token in DASHBOARD_TOKEN" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_an_empty_projects_folder_name_is_refused_before_anything_starts(paths):
    """Path("") is the current folder: the steps would have searched the repository."""
    out = subprocess.run([sys.executable, str(ROOT / "app.py"), "--projects-dir", "", "--port", "0",
                          "--logs-dir", str(paths["logs"]), "--database", str(paths["db"])],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert out.stderr.strip() == "error: --projects-dir is empty: name the folder of your videos"
    assert not paths["db"].exists()


def test_a_busy_port_is_one_clear_line(paths):
    write_workflow(paths["workflow"], [step("s", "sleeper.py")])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--logs-dir", str(paths["logs"]),
                              "--database", str(paths["db"]), "--config", str(paths["workflow"])],
                             capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in out.stderr


def test_a_token_guards_a_non_loopback_server(paths, app_process):
    write_workflow(paths["workflow"], [step("s", "sleeper.py")])
    server = app_process("--host", "0.0.0.0", env={"DASHBOARD_TOKEN": TOKEN})
    assert server.call("GET", "/api/steps")[0] == 401
    assert server.call("POST", "/api/steps/s/run")[0] == 401
    status, body = server.call("GET", "/api/steps", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and body["steps"][0]["id"] == "s"


def test_a_crash_then_a_restart_marks_the_run_interrupted_and_ends_its_processes(paths, app_process):
    write_workflow(paths["workflow"], [step("tree", "grandchild.py")])
    first = app_process()
    status, body = first.call("POST", "/api/steps/tree/run")
    assert status == 202
    run_id = body["run_id"]
    lines = wait_for(lambda: [x for x in first.call("GET", f"/api/runs/{run_id}")[1]["last_lines"] if x.startswith("GRANDCHILD")],
                     message="the grandchild")
    grandchild = int(lines[0].split()[1])
    child = psutil.Process(grandchild).ppid()
    first.proc.send_signal(signal.SIGKILL)  # a crash: nothing gets to clean up
    first.proc.wait(10)
    assert alive(child) and alive(grandchild), "the step runs in its own session and outlives the server"

    second = app_process()
    status, run = second.call("GET", f"/api/runs/{run_id}")
    assert run["status"] == "interrupted"
    assert run["reason"] == "interrupted: the server stopped while it ran"
    wait_for(lambda: not alive(child) and not alive(grandchild), timeout=10, message="the orphans to be ended")
    app_log = (paths["logs"] / "app.log").read_text()
    assert f"run {run_id} of tree was still marked running: marked interrupted" in app_log
    assert "ended 2 process(es)" in app_log


def test_sigterm_stops_the_server_and_its_runs_cleanly(paths, app_process):
    write_workflow(paths["workflow"], [step("s", "sleeper.py")])
    server = app_process()
    status, body = server.call("POST", "/api/steps/s/run")
    run_id = body["run_id"]
    wait_for(lambda: server.call("GET", f"/api/runs/{run_id}")[1]["total"] == 1, message="the run to start")
    pid = [p.pid for p in psutil.Process(server.proc.pid).children()][0]
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(20) == 0
    assert not alive(pid)
    again = app_process()
    run = again.call("GET", f"/api/runs/{run_id}")[1]
    assert run["status"] == "interrupted" and run["reason"] == "interrupted: the server stopped while it ran"
    assert run["ended_at"] is not None
    # app.log is appended to, never truncated, across restarts.
    app_log = (paths["logs"] / "app.log").read_text()
    assert app_log.count("dashboard ready") == 2
