"""What a step leaves running after it exits: a warning only when something really stays.

Real step scripts (tests/dashboard/steps/): one whose child ends a moment after
it, as multiprocessing's resource tracker does; one whose child would stay;
one that uses multiprocessing the way STEP3 does. The real STEP3 is in
test_step3_runs.py.
"""
import logging

import psutil
import pytest
from dash_support import finish, log_text, step, wait_for

from dashboard import procs
from dashboard.launcher import RUN_TAG_ENV, run_tag

LEFT_BEHIND = "left behind by the step"


def stray_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and LEFT_BEHIND in r.getMessage()]


def child_of(snap) -> int:
    return int(next(x for x in snap["last_lines"] if x.startswith("CHILD")).split()[1])


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_child_that_ends_a_moment_after_the_step_is_no_warning(make_runner, caplog):
    # Today's code warned here: the child was still there when the step had just exited.
    caplog.set_level(logging.INFO)
    runner = make_runner(step("l", "lingering.py", "--lives", "0.5"))
    run = runner.launch("l")
    snap = finish(run)
    assert snap["status"] == "succeeded"
    assert not alive(child_of(snap)), "the child ends by itself before the run is over"
    assert stray_warnings(caplog) == []
    assert "the step left" not in log_text(runner, run)
    assert any(f"run {run.id} of l ended: succeeded" in r.getMessage() for r in caplog.records)


def test_a_child_that_stays_is_a_warning_and_is_ended(make_runner, caplog):
    runner = make_runner(step("l", "lingering.py", "--lives", "60"))
    run = runner.launch("l")
    snap = finish(run)
    child = child_of(snap)
    assert snap["status"] == "succeeded"
    warnings = stray_warnings(caplog)
    assert len(warnings) == 1 and f"{child} (python" in warnings[0] and f"run {run.id} of l" in warnings[0]
    assert "the step left 1 process(es) running" in log_text(runner, run)
    wait_for(lambda: not alive(child), timeout=5, message="the child left behind to be ended")


@pytest.mark.parametrize("attempt", range(5))
def test_multiprocessing_s_resource_tracker_is_no_warning(make_runner, caplog, attempt):
    # A spawned worker and shared memory start Python's resource tracker in the
    # step's group; it exits just after the step. Several runs: the race is real.
    runner = make_runner(step("m", "spawner.py"))
    run = runner.launch("m")
    snap = finish(run)
    assert snap["status"] == "succeeded" and "WORKER SAID hello" in snap["last_lines"]
    assert stray_warnings(caplog) == []
    assert procs.tagged(RUN_TAG_ENV, run_tag(run.id)) == [], "nothing of the run is left"
