"""The runner, driven directly (no Flask), with tiny real step scripts."""
import json
import logging
import subprocess
import sys
import threading
import time

import psutil
import pytest
from dash_support import ROOT, finish, log_text, step, wait_for, write_workflow

from dashboard.bus import EventBus
from dashboard.history import RunStore
from dashboard.registry import load_registry
from dashboard.runner import Busy, NotReady, Runner
from dashboard.status import REASON_CANCELLED, REASON_INTERRUPTED, RunStatus


def test_progress_step_succeeds_with_its_counters(make_runner):
    runner = make_runner(step("p", "progress.py", "--items", "3", "--fail", "2", "--exit", "0"))
    snap = finish(runner.launch("p"))
    assert snap["status"] == RunStatus.SUCCEEDED == "succeeded"
    assert snap["reason"] == "exit code 0" and snap["return_code"] == 0
    assert (snap["total"], snap["succeeded"], snap["failed"], snap["skipped"]) == (3, 2, 1, 0)
    assert snap["fraction"] == 1.0 and snap["percent"] == 100.0
    assert snap["failures"][0]["item"] == "demo/video 2.mp4"
    assert snap["last_lines"][-1] == "SUMMARY: 2/3 succeeded, 1 failed, 0 skipped"
    row = runner.store.get(snap["id"])
    assert (row["status"], row["return_code"], row["succeeded"], row["failed"]) == ("succeeded", 0, 2, 1)
    assert row["ended_at"] >= row["started_at"]
    text = log_text(runner, runner.latest("p"))
    assert "SUCCESS: 3/3: demo/video 3.mp4 -> demo/video 3.csv (30 scenes)" in text
    assert text.endswith("\n")


def test_exit_code_is_a_failure_in_plain_words(make_runner):
    runner = make_runner(step("e", "exit_code.py", "3", exit_codes={"3": "test failure"}))
    snap = finish(runner.launch("e"))
    assert snap["status"] == "failed"
    assert snap["return_code"] == 3
    assert snap["reason"] == "exit code 3 (test failure)"


def test_death_by_signal_is_named(make_runner):
    runner = make_runner(step("k", "self_kill.py"))
    snap = finish(runner.launch("k"))
    assert snap["status"] == "failed"
    assert snap["return_code"] == -9
    assert snap["reason"].startswith("killed by signal 9")


def test_cancel_ends_a_step_that_ignores_sigterm(make_runner):
    runner = make_runner(step("t", "ignore_term.py", cancel_grace_s=0.5))
    run = runner.launch("t")
    wait_for(lambda: run.snapshot()["last_lines"], message="the step to start")
    pid = run.pid
    runner.cancel("t")
    snap = finish(run)
    assert snap["status"] == "cancelled" != "failed"
    assert snap["reason"] == REASON_CANCELLED
    assert not psutil.pid_exists(pid)
    assert "SIGKILL sent" in log_text(runner, run)


@pytest.mark.parametrize("escape", [False, True], ids=["same-group", "setsid-escapee"])
def test_cancel_leaves_no_descendant(make_runner, escape):
    args = ["--escape"] if escape else []
    runner = make_runner(step("g", "grandchild.py", *args))
    run = runner.launch("g")
    line = wait_for(lambda: [x for x in run.snapshot()["last_lines"] if x.startswith("GRANDCHILD")], message="the grandchild")
    grandchild = int(line[0].split()[1])
    child = run.pid
    assert psutil.pid_exists(grandchild)
    runner.cancel("g")
    snap = finish(run)
    assert snap["status"] == "cancelled"
    gone = wait_for(lambda: not any(_alive(p) for p in (child, grandchild)), timeout=5, message="the processes to end")
    assert gone


@pytest.mark.parametrize("args", [
    ("--exit",),                             # a grandchild left in the group
    ("--escape", "--exit-after", "1.5"),     # a daemon that left the group, seen in the tree
    ("--escape", "--exit"),                  # orphaned before any look at the tree: found by the run's tag
], ids=["stray-in-group", "daemon-seen", "daemon-orphaned-at-once"])
def test_processes_left_behind_by_a_finished_step_are_ended(make_runner, args):
    runner = make_runner(step("g", "grandchild.py", *args))
    run = runner.launch("g")
    snap = finish(run)
    left = int(next(x for x in snap["last_lines"] if x.startswith("GRANDCHILD")).split()[1])
    assert snap["status"] == "succeeded"
    wait_for(lambda: not _alive(left), timeout=5, message="the process left behind to end")


def test_flood_of_lines_is_absorbed_entirely(make_runner):
    n = 200_000
    runner = make_runner(step("f", "flood.py", str(n)))
    run = runner.launch("f")
    snap = finish(run, timeout=60)
    assert snap["status"] == "succeeded"
    assert snap["lines"] == n + 1
    assert snap["last_lines"][-1].startswith(f"FLOOD_DONE lines={n}")
    with open(runner.logs_dir / run.log_rel, "rb") as f:
        count = sum(1 for line in f if line.startswith(b"line "))
    assert count == n


def test_awkward_bytes_from_a_real_child(make_runner):
    runner = make_runner(step("r", "raw_bytes.py"))
    run = runner.launch("r")
    snap = finish(run)
    assert snap["status"] == "succeeded"
    lines = snap["last_lines"]
    assert lines[0] == "caf\ufffd \ufffd\ufffd broken utf-8"
    assert "utf-8 ok: café ✓" in lines
    assert "WARNING: red text" in lines and "title set" in lines
    assert lines[-4:-1] == ["bar 10%", "bar 50%", "bar 100%"]
    # The last line had no newline and still counts: it is the summary.
    assert lines[-1] == "SUMMARY: 1/1 succeeded, 0 failed, 0 skipped"
    assert snap["succeeded"] == 1
    assert "\x1b" not in log_text(runner, run)


def test_a_log_file_that_cannot_be_opened_fails_the_run_instead_of_leaving_it_running(make_runner):
    runner = make_runner(step("p", "progress.py", "--items", "1"))
    runner.logs_dir.mkdir(parents=True)
    (runner.logs_dir / "p").write_text("a file where the step's log folder should be")
    run = runner.launch("p")
    snap = finish(run)
    assert snap["status"] == "failed" and snap["reason"].startswith("could not start: cannot open its log file")
    assert runner.store.get(run.id)["status"] == "failed"
    assert runner.active("p") is None


def test_failures_and_the_last_success_are_kept_in_the_history(make_runner):
    runner = make_runner(step("p", "progress.py", "--items", "3", "--fail", "2"))
    snap = finish(runner.launch("p"))
    row = runner.store.get(snap["id"])
    assert row["failures"] == snap["failures"] and row["failures"][0]["item"] == "demo/video 2.mp4"
    assert row["last_success"] == snap["last_success"] and row["last_success"]["index"] == 3


def test_argv_and_environment_reach_the_step_untouched(make_runner, monkeypatch, tmp_path):
    monkeypatch.setenv("DASHBOARD_TOKEN", "a-secret-that-steps-must-not-see")
    tricky = "$(touch pwned); rm -rf / `id` 'quoted' \"double\" ; | &"
    runner = make_runner(step("envd", "env_dump.py", "--input-dir", "{projects_dir}", tricky, env={"STEP_EXTRA": "{logs_dir}"}))
    run = runner.launch("envd")
    finish(run)
    data = json.loads(next(x for x in log_text(runner, run).splitlines() if x.startswith("{")))
    assert data["argv"] == ["--input-dir", str(tmp_path / "projects"), tricky]
    assert data["env"]["PYTHONUNBUFFERED"] == "1"
    assert data["env"]["DASHBOARD_TOKEN"] is None
    assert data["env"]["DASHBOARD_RUN_ID"] == str(run.id)
    assert data["env"]["STEP_EXTRA"] == str(tmp_path / "logs")
    assert data["env"]["VIRTUAL_ENV"] == str(ROOT / "env")
    assert data["prefix"] == str(ROOT / "env"), "the step must run with its venv's Python"
    assert data["session_leader"] is True
    assert not (ROOT / "pwned").exists() and not (tmp_path / "pwned").exists()


def test_two_launches_at_the_same_instant_give_one_run(make_runner):
    runner = make_runner(step("s", "sleeper.py"))
    barrier = threading.Barrier(8)
    results = []

    def go():
        barrier.wait()
        try:
            results.append(runner.launch("s"))
        except Busy as exc:
            results.append(exc)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runs = [r for r in results if not isinstance(r, Busy)]
    refusals = [r for r in results if isinstance(r, Busy)]
    assert len(runs) == 1 and len(refusals) == 7
    assert all(r.run_id == runs[0].id for r in refusals)
    assert "already running" in str(refusals[0])
    runner.cancel("s")
    finish(runs[0])


def test_steps_sharing_the_gpu_never_run_side_by_side(make_runner):
    runner = make_runner(step("a", "sleeper.py", resources=["gpu"]), step("b", "sleeper.py", resources=["gpu"]),
                         step("c", "sleeper.py"))
    a = runner.launch("a")
    with pytest.raises(Busy, match="resource 'gpu' is in use by Test a"):
        runner.launch("b")
    c = runner.launch("c")  # no shared resource: runs beside it
    runner.cancel("a")
    finish(a)
    b = runner.launch("b")
    for sid, run in (("b", b), ("c", c)):
        runner.cancel(sid)
        finish(run)


def test_a_step_that_cannot_be_executed_is_a_failed_run_that_says_why(tmp_path):
    # A venv whose python is not a program: exec fails, the run says so.
    root = tmp_path / "repo"
    (root / "broken_env" / "bin").mkdir(parents=True)
    python = root / "broken_env" / "bin" / "python"
    python.write_text("not a program\n")
    python.chmod(0o755)
    (root / "step.py").write_text("print('never')\n")
    wf = write_workflow(tmp_path / "wf.json", [dict(step("b", "progress.py", venv="broken_env"), script="step.py")],
                        {"broken_env": {}})
    store = RunStore(tmp_path / "runs.sqlite3")
    runner = Runner(load_registry(wf, root), store, tmp_path / "logs", tmp_path, EventBus(), logging.getLogger("t"))
    try:
        run = runner.launch("b")
        snap = finish(run)
        assert snap["status"] == "failed"
        assert snap["reason"].startswith("could not start: ") and "format" in snap["reason"].lower()
        assert store.get(run.id)["status"] == "failed"
        assert runner.active("b") is None
        assert runner.launch("b").id != run.id  # the failed start does not hold the step
    finally:
        runner.shutdown()
        store.close()


def test_missing_venv_is_a_clear_error_with_its_fix(make_runner):
    runner = make_runner(step("v", "progress.py", venv="ghost_env"), venvs={"env": {}, "ghost_env": {"setup": "make setup"}})
    with pytest.raises(NotReady) as info:
        runner.launch("v")
    assert info.value.fix == "make setup"
    assert "ghost_env/bin/python not found" in str(info.value)


def test_recover_marks_stale_runs_interrupted_and_ends_their_group(tmp_path, make_runner):
    runner = make_runner(step("s", "sleeper.py"))
    # A step left running by a server that died: its own session, still alive.
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    try:
        run_id = runner.store.create("s", time.time() - 5)
        runner.store.update(run_id, pid=orphan.pid, pid_started_at=psutil.Process(orphan.pid).create_time())
        # And one whose pid now belongs to someone else: must be left alone.
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
        stale_id = runner.store.create("s", time.time() - 5)
        runner.store.update(stale_id, pid=other.pid, pid_started_at=12345.0)
        assert runner.recover(grace=2) == [run_id, stale_id]
        assert orphan.wait(5) is not None
        assert other.poll() is None, "a process that is not ours was ended"
        for rid in (run_id, stale_id):
            row = runner.store.get(rid)
            assert row["status"] == RunStatus.INTERRUPTED == "interrupted"
            assert row["reason"] == REASON_INTERRUPTED
    finally:
        for p in (orphan, other):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_shutdown_interrupts_running_steps(make_runner):
    runner = make_runner(step("s", "sleeper.py"))
    run = runner.launch("s")
    pid = run.pid
    runner.shutdown(timeout=10)
    snap = finish(run)
    assert snap["status"] == "interrupted" and snap["reason"] == REASON_INTERRUPTED
    assert not _alive(pid)
    with pytest.raises(Exception, match="stopping"):
        runner.launch("s")


def test_the_runner_has_no_flask_inside():
    code = "import sys, dashboard.runner, dashboard.sequence, dashboard.service; print('flask' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False

