"""The time left: no figure until it means something, none while a run is being cancelled."""
import time

import pytest
from dash_support import finish, step

from dashboard.eta import Eta


def feed(eta: Eta, samples):
    for t, fraction in samples:
        eta.observe(t, fraction)


def test_a_slow_start_does_not_inflate_the_estimate():
    # 10 s of start-up with nothing done, then 1 % a second: 100 s of work.
    eta = Eta()
    start = 10.0
    feed(eta, [(start + s, s / 100) for s in range(1, 4)])
    assert eta.estimate(start + 3) is None, "3 s of progress: too early to say"
    feed(eta, [(start + s, s / 100) for s in range(4, 11)])
    assert eta.estimate(start + 10) == pytest.approx(90, rel=0.05)  # elapsed * (1 - f) / f said 180 s


def test_no_figure_below_a_few_percent_or_on_an_unsteady_pace():
    slow = Eta()
    feed(slow, [(s, s / 1000) for s in range(1, 20)])  # 2 % after 20 s
    assert slow.estimate(20) is None
    speeding = Eta()
    # 0.5 %/s for 10 s, then 5 %/s: the pace of the start says nothing of the rest.
    feed(speeding, [(s, 0.005 * s) for s in range(1, 11)] + [(10 + s, 0.05 + 0.05 * s) for s in range(1, 6)])
    assert speeding.estimate(15) is None


def test_the_estimate_counts_down_between_progress_lines_and_never_goes_below_zero():
    eta = Eta()
    feed(eta, [(s, s / 20) for s in range(1, 10)])  # 5 %/s, 45 % at 9 s
    assert eta.estimate(9) == pytest.approx(11, rel=0.05)
    assert eta.estimate(12) == pytest.approx(8, rel=0.05)
    assert eta.estimate(100) == 0.0


def test_many_samples_keep_the_first_and_stay_bounded():
    eta = Eta()
    feed(eta, [(i * 0.3, i / 10_000) for i in range(1, 9000)])
    assert len(eta._times) <= Eta.MAX_SAMPLES and eta._times[0] == 0.3
    t = 8999 * 0.3
    assert eta.estimate(t) == pytest.approx((1 - 0.8999) / (1 / 3000), rel=0.02)


def watch(run, every=0.1):
    """(wall time, eta_s) of each snapshot until the run ends."""
    seen = []
    while not run.done.is_set():
        snap = run.snapshot()
        seen.append((time.time(), snap["eta_s"], snap["cancelling"]))
        time.sleep(every)
    return seen


def test_a_real_run_shows_no_figure_until_it_is_about_right(make_runner):
    # 3 s of start-up, then 50 frames of 0.2 s.
    runner = make_runner(step("p", "progress.py", "--items", "1", "--frames", "50", "--delay", "0.2",
                              "--start-delay", "3"))
    run = runner.launch("p")
    seen = watch(run)
    end = finish(run)["ended_at"]
    figures = [(when, eta) for when, eta, _ in seen if eta is not None]
    assert len(figures) > 10, "the figure comes after some seconds of steady progress"
    for when, eta in figures:
        left = end - when
        assert abs(eta - left) <= max(1.5, 0.35 * left), (eta, left)


def test_no_figure_while_a_run_is_being_cancelled(make_runner):
    # It ignores SIGTERM and goes on printing progress until the SIGKILL 2 s later.
    runner = make_runner(step("p", "progress.py", "--items", "1", "--frames", "400", "--delay", "0.05",
                              "--ignore-term", cancel_grace_s=2))
    run = runner.launch("p")
    deadline = time.monotonic() + 20
    while run.snapshot()["eta_s"] is None:
        assert time.monotonic() < deadline, "no ETA within 20 s of steady progress"
        time.sleep(0.1)
    runner.cancel("p")
    seen = watch(run, every=0.05)
    assert finish(run)["status"] == "cancelled"
    cancelling = [eta for _, eta, is_cancelling in seen if is_cancelling]
    assert len(cancelling) > 10 and cancelling == [None] * len(cancelling)
    assert run.snapshot()["eta_s"] is None
