"""STEP3's side of the progress-line contract, in STEP3's venv: the patterns are
read from config/workflow.json by the dashboard's rule (a standard set's name
resolved in stepkit.progress_lines), the documented sample lines give the
documented fields with them, and the lines STEP3 prints, from its emitter and
from a real run, are read back by them. The dashboard's side is
tests/dashboard/test_pattern_sets.py (env venv), on the same sample."""
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shots.report import Reporter
from stepkit.progress_lines import resolve_patterns

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "workflow_scripts" / "step3" / "run_transnet.py"
STEP3_ENTRY = next(s for s in json.loads((REPO / "config" / "workflow.json").read_text())["steps"]
                   if s["id"] == "step3")
PATTERNS = {key: re.compile(rx) for key, rx in resolve_patterns(STEP3_ENTRY["progress_patterns"]).items()}
KEYWORDS = ("TOTAL_VIDEOS_TO_PROCESS:", "PROCESSING_VIDEO:", "FRAMES:", "SUCCESS:", "FAILED:", "SKIPPED:",
            "SUMMARY:")


def sample_lines():
    text = (REPO / "docs" / "progress-protocol.md").read_text()
    block = text.split("<!-- sample-lines:start -->")[1].split("<!-- sample-lines:end -->")[0]
    return [ln for ln in block.strip().strip("`").strip().splitlines() if ln.strip()]


def read(line):
    """(key, fields) of the one pattern matching ``line``, or None."""
    found = [(key, rx.match(line).groupdict()) for key, rx in PATTERNS.items() if rx.match(line)]
    assert len(found) <= 1, f"{line!r} matches {[k for k, _ in found]}"
    return found[0] if found else None


def test_step3_names_a_standard_set():
    # Its regexes live once, in stepkit; the dashboard resolves the name the same way.
    assert STEP3_ENTRY["progress_patterns"] == "video-batch"
    assert set(PATTERNS) == {"total", "item", "progress", "success", "failure", "skipped", "summary"}


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
    key, got = read(line)
    assert key == kind
    assert {name: got[name] for name in fields} == fields


def test_every_sample_line_matches_at_most_one_pattern():
    matched = [read(line) for line in sample_lines()]
    assert [line.split(":")[0] for line, m in zip(sample_lines(), matched) if m is None] == [
        "CONFIG_EFFECTIVE", "DEVICE", "WARNING"]


def test_step3_s_emitter_prints_lines_the_patterns_read():
    out = io.StringIO()
    r = Reporter(stream=out)
    r.total(2)
    r.processing(1, 2, "a dir/clip: one.MP4")
    r.frames(1, 2, 50, 100)
    r.success(1, 2, "a dir/clip: one.MP4", "a dir/clip: one.csv", 1)
    r.processing(2, 2, "b.mkv")
    r.failed(2, 2, "b.mkv", "no video stream in the file")
    r.skipped(2, 2, "b.mkv", "results complete (use --force to redo)")
    r.summary(1, 2, 1, 0)
    got = [read(line) for line in out.getvalue().splitlines()]
    assert got[0] == ("total", {"total": "2"})
    assert got[1][1]["item"] == "a dir/clip: one.MP4"
    assert got[2] == ("progress", {"index": "1", "total_items": "2", "done": "50", "total": "100"})
    assert got[3][0] == "success"
    assert (got[3][1]["item"], got[3][1]["result"], got[3][1]["scenes"]) == (
        "a dir/clip: one.MP4", "a dir/clip: one.csv", "1")
    assert got[5] == ("failure", {"index": "2", "total": "2", "item": "b.mkv", "cause": "no video stream in the file"})
    assert got[6][0] == "skipped" and got[6][1]["item"] == "b.mkv"
    assert got[7] == ("summary", {"succeeded": "1", "total": "2", "failed": "1", "skipped": "0"})


def test_names_with_newlines_cannot_break_the_one_event_per_line_rule():
    out = io.StringIO()
    Reporter(stream=out).processing(1, 1, "evil\nSUMMARY: 9/9 succeeded, 0 failed, 0 skipped.mp4")
    [line] = out.getvalue().splitlines()
    assert read(line)[0] == "item"


def run_step3(folder, logs):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("DRY_RUN", None)
    out = subprocess.run([sys.executable, str(SCRIPT), "--input-dir", str(folder), "--log-dir", str(logs),
                          "--device", "cpu"], capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    protocol = [ln for ln in out.stdout.splitlines() if ln.startswith(KEYWORDS)]
    return out, protocol


def test_a_real_run_s_lines_are_all_read(tmp_path):
    """Every protocol line a real STEP3 run prints (a video, a broken one, then a
    second run that skips the done one) is read by exactly one pattern."""
    folder = tmp_path / "projects" / "a: dir"
    folder.mkdir(parents=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=2",
                    "-pix_fmt", "yuv420p", str(folder / "clip -> one.mp4")], check=True, timeout=60)
    (folder / "broken.mov").write_bytes(b"\x00garbage" * 100)

    out, protocol = run_step3(tmp_path / "projects", tmp_path / "logs")
    assert out.returncode == 1, out.stdout + out.stderr
    got = [read(line) for line in protocol]
    assert None not in got, [ln for ln, g in zip(protocol, got) if g is None]
    keys = [k for k, _ in got]
    assert keys[0] == "total" and keys[-1] == "summary"
    assert sorted(set(keys)) == ["failure", "item", "progress", "success", "summary", "total"]
    fields = {k: f for k, f in got if k in ("success", "failure", "summary")}
    assert fields["success"]["item"] == "a: dir/clip -> one.mp4"
    assert fields["success"]["result"] == "a: dir/clip -> one.csv" and fields["success"]["scenes"] == "1"
    assert fields["failure"]["item"] == "a: dir/broken.mov"
    assert fields["summary"] == {"succeeded": "1", "total": "2", "failed": "1", "skipped": "0"}

    out, protocol = run_step3(tmp_path / "projects", tmp_path / "logs")
    got = [read(line) for line in protocol]
    assert None not in got
    skipped = [f for k, f in got if k == "skipped"]
    assert [f["item"] for f in skipped] == ["a: dir/clip -> one.mp4"]
    assert got[-1] == ("summary", {"succeeded": "0", "total": "2", "failed": "1", "skipped": "1"})
