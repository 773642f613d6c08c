"""STEP3's side of the progress-line contract: the documented sample lines match
the patterns the dashboard uses, with the documented fields, and the lines the
reporter prints are the documented ones."""
import io
import json
import re

import pytest

from shots import report as progress
from conftest import REPO
from shots.report import Reporter

PATTERNS = next(s for s in json.loads((REPO / "config" / "workflow.json").read_text())["steps"]
                if s["id"] == "step3")["progress_patterns"]


def sample_lines():
    text = (REPO / "docs" / "progress-protocol.md").read_text()
    block = text.split("<!-- sample-lines:start -->")[1].split("<!-- sample-lines:end -->")[0]
    return [ln for ln in block.strip().strip("`").strip().splitlines() if ln.strip()]


def match(kind, line):
    return re.match(PATTERNS[kind], line)


@pytest.mark.parametrize("kind, line, fields", [
    ("total", "TOTAL_VIDEOS_TO_PROCESS: 3", {"total": "3"}),
    ("item", "PROCESSING_VIDEO: 1/3: demo/sample.mp4", {"index": "1", "total": "3", "item": "demo/sample.mp4"}),
    ("progress", "FRAMES: 1/3: 2650/5301", {"index": "1", "done": "2650", "total": "5301"}),
    ("success", "SUCCESS: 1/3: demo/sample.mp4 -> demo/sample.csv (108 scenes)",
     {"index": "1", "item": "demo/sample.mp4", "result": "demo/sample.csv", "scenes": "108"}),
    ("failure", "FAILED: 2/3: demo/broken clip.mp4: cannot read video: Invalid data found when processing input",
     {"index": "2", "item": "demo/broken clip.mp4",
      "cause": "cannot read video: Invalid data found when processing input"}),
    ("skipped", "SKIPPED: 3/3: demo/old.mov: results complete (use --force to redo)",
     {"index": "3", "item": "demo/old.mov"}),
    ("summary", "SUMMARY: 1/3 succeeded, 1 failed, 1 skipped",
     {"succeeded": "1", "total": "3", "failed": "1", "skipped": "1"}),
])
def test_documented_samples_give_documented_fields(kind, line, fields):
    assert line in sample_lines()
    m = match(kind, line)
    assert m, f"{kind} pattern does not match {line!r}"
    for key, value in fields.items():
        assert m.group(key) == value


def test_every_sample_line_matches_at_most_one_pattern():
    for line in sample_lines():
        assert sum(bool(match(kind, line)) for kind in PATTERNS) <= 1


def test_reporter_prints_lines_the_patterns_read():
    out = io.StringIO()
    r = Reporter(stream=out)
    r.total(2)
    r.processing(1, 2, "a dir/clip: one.MP4")
    r.frames(1, 2, 50, 100)
    r.success(1, 2, "a dir/clip: one.MP4", "a dir/clip: one.csv", 1)
    r.processing(2, 2, "b.mkv")
    r.failed(2, 2, "b.mkv", "no video stream in the file")
    r.summary(1, 2, 1, 0)
    got = out.getvalue().splitlines()
    assert match("total", got[0]).group("total") == "2"
    assert match("item", got[1]).group("item") == "a dir/clip: one.MP4"
    assert match("progress", got[2]).group("done") == "50"
    m = match("success", got[3])
    assert (m.group("item"), m.group("result"), m.group("scenes")) == ("a dir/clip: one.MP4", "a dir/clip: one.csv", "1")
    m = match("failure", got[5])
    assert (m.group("item"), m.group("cause")) == ("b.mkv", "no video stream in the file")
    assert match("summary", got[6]).group("failed") == "1"


def test_frames_lines_are_throttled_but_final_always_prints(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    r = Reporter(stream=out)
    for done in range(0, 1001, 1):
        r.frames(1, 1, done, 10000)
    r.frames(1, 1, 10000, 10000, final=True)
    lines = out.getvalue().splitlines()
    done = [int(ln.split(": ")[2].split("/")[0]) for ln in lines]
    # 1001 calls covering 10 % of the video within no time: one line per 2 %, plus the final one.
    assert len(lines) == 6
    assert all(b - a >= 199 for a, b in zip(done, done[1:]))
    assert lines[-1] == "FRAMES: 1/1: 10000/10000"


def test_a_slow_item_still_reports_every_second(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    r = Reporter(stream=out)
    for done in range(0, 100, 10):  # 0.1 % of the video per call, 0.5 s apart
        r.frames(1, 1, done, 100000)
        clock[0] += 0.5
    lines = out.getvalue().splitlines()
    assert lines == ["FRAMES: 1/1: 0/100000", "FRAMES: 1/1: 20/100000", "FRAMES: 1/1: 40/100000",
                     "FRAMES: 1/1: 60/100000", "FRAMES: 1/1: 80/100000"]


def test_names_with_newlines_cannot_break_the_one_event_per_line_rule():
    out = io.StringIO()
    Reporter(stream=out).processing(1, 1, "evil\nSUMMARY: 9/9 succeeded, 0 failed, 0 skipped.mp4")
    assert len(out.getvalue().splitlines()) == 1
