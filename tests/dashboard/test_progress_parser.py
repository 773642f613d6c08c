"""Progress lines: the step's patterns against the contract's sample lines, and
the state they build (counters, the smooth fraction, the failures)."""
import re

import pytest
from dash_support import SAMPLE_FIELDS, protocol_patterns, sample_lines

from dashboard.progress import LineMatcher, PatternError, ProgressState, compile_patterns


def matcher() -> LineMatcher:
    return LineMatcher(compile_patterns(protocol_patterns()))


def test_every_field_of_the_sample_table():
    lines = sample_lines()
    m = matcher()
    for line, (key, fields) in SAMPLE_FIELDS.items():
        assert line in lines, f"the sample block no longer holds {line!r}"
        found = m.match(line)
        assert found is not None and found[0] == key, line
        for name, value in fields.items():
            assert found[1][name] == value, (line, name)


def test_lines_without_a_pattern_are_plain_log_lines():
    m = matcher()
    plain = [line for line in sample_lines() if line.startswith(("CONFIG_EFFECTIVE", "DEVICE", "WARNING"))]
    # Each kind is in the sample block, or this test would check nothing.
    assert {line.split(":", 1)[0] for line in plain} == {"CONFIG_EFFECTIVE", "DEVICE", "WARNING"}
    for line in plain:
        assert m.match(line) is None, line
    # Every other line of the block is a progress line.
    assert all(m.match(line) for line in sample_lines() if line not in plain)


def test_sample_run_gives_the_summary_state():
    state = ProgressState()
    m = matcher()
    fractions = []
    for line in sample_lines():
        found = m.match(line)
        if found:
            state.apply(*found)
            fractions.append(state.fraction)
    assert (state.total, state.succeeded, state.failed, state.skipped) == (3, 1, 1, 1)
    assert state.fraction == 1.0
    assert fractions == sorted(fractions), "the bar went backwards"
    assert state.failures[0].item == "demo/broken clip.mp4"
    assert state.failures[0].detail.startswith("cannot read video")
    assert state.last_success.detail == "demo/sample.csv (108 scenes)"


def test_fraction_is_smooth_items_done_plus_the_current_item():
    state = ProgressState()
    m = matcher()
    for line in ["TOTAL_VIDEOS_TO_PROCESS: 4", "PROCESSING_VIDEO: 1/4: a.mp4", "FRAMES: 1/4: 50/100"]:
        state.apply(*m.match(line))
    assert state.fraction == pytest.approx(0.125)
    for line in ["SUCCESS: 1/4: a.mp4 -> a.csv (3 scenes)", "PROCESSING_VIDEO: 2/4: b.mp4", "FRAMES: 2/4: 25/100"]:
        state.apply(*m.match(line))
    assert state.fraction == pytest.approx((1 + 0.25) / 4)
    assert (state.index, state.item, state.item_done, state.item_total) == (2, "b.mp4", 25, 100)


def test_items_in_progress_at_once_all_count():
    """STEP3 decodes several videos in parallel: their FRAMES lines interleave."""
    state = ProgressState()
    m = matcher()
    for line in ["TOTAL_VIDEOS_TO_PROCESS: 4", "PROCESSING_VIDEO: 1/4: a.mp4", "PROCESSING_VIDEO: 2/4: b.mp4",
                 "FRAMES: 1/4: 50/100", "FRAMES: 2/4: 20/100"]:
        state.apply(*m.match(line))
    assert state.fraction == pytest.approx((0.5 + 0.2) / 4)
    assert state.in_progress == 2
    state.apply(*m.match("SUCCESS: 2/4: b.mp4 -> b.csv (1 scene)"))
    assert state.fraction == pytest.approx((1 + 0.5) / 4)
    # The item shown was done: the card moves to the one still in progress.
    assert (state.index, state.item, state.item_done, state.item_total) == (1, "a.mp4", 50, 100)
    assert state.in_progress == 1


def test_frame_count_beyond_the_estimate_is_clamped():
    state = ProgressState()
    m = matcher()
    for line in ["TOTAL_VIDEOS_TO_PROCESS: 2", "PROCESSING_VIDEO: 1/2: a.mp4", "FRAMES: 1/2: 130/100"]:
        state.apply(*m.match(line))
    assert state.fraction == pytest.approx(0.5)


def test_a_growing_estimate_never_moves_the_bar_back():
    state = ProgressState()
    m = matcher()
    for line in ["TOTAL_VIDEOS_TO_PROCESS: 1", "PROCESSING_VIDEO: 1/1: a.mp4", "FRAMES: 1/1: 90/100"]:
        state.apply(*m.match(line))
    state.apply(*m.match("FRAMES: 1/1: 91/200"))
    assert state.fraction == pytest.approx(0.9)


def test_an_item_counts_once_however_many_lines_name_it():
    state = ProgressState()
    m = matcher()
    for line in ["TOTAL_VIDEOS_TO_PROCESS: 1", "PROCESSING_VIDEO: 1/1: a.mp4",
                 "SUCCESS: 1/1: a.mp4 -> a.csv (3 scenes)", "SUCCESS: 1/1: a.mp4 -> a.scenes.json (3 scenes)"]:
        state.apply(*m.match(line))
    assert state.succeeded == 1


def test_name_with_separators_comes_from_the_item_line():
    name = "demo/take: 2 -> final (1 scenes).mp4"
    state = ProgressState()
    m = matcher()
    for line in ["TOTAL_VIDEOS_TO_PROCESS: 1", f"PROCESSING_VIDEO: 1/1: {name}",
                 f"FAILED: 1/1: {name}: cannot read video: moov atom not found"]:
        state.apply(*m.match(line))
    assert state.item == name
    assert state.failures[0].item == name


def test_no_total_means_no_fraction_until_it_ends():
    state = ProgressState()
    assert state.fraction is None
    state.complete()
    assert state.fraction == 1.0


# ---- patterns a step may not have ---------------------------------------------

@pytest.mark.parametrize("patterns, message", [
    ({"total": "^TOTAL: (?P<total>\\d+"}, "progress_patterns.total: bad regex"),
    ({"item": "^ITEM: (?P<name>.+)$"}, "needs the named group(s) item"),
    ({"progress": "^F: (?P<done>\\d+)$"}, "needs the named group(s) total"),
    ({"percent": "^P: (?P<p>\\d+)$"}, "unknown key"),
])
def test_bad_patterns_are_one_clear_line(patterns, message):
    with pytest.raises(PatternError, match=re.escape(message)):
        compile_patterns(patterns)
