"""The inventory step, run as the dashboard runs it: its venv's Python, a real folder."""
import json
import subprocess
import sys

import pytest
from dash_support import ROOT

SCRIPT = ROOT / "workflow_scripts" / "inventory" / "inventory.py"


def make_video(path, seconds=1, size="64x36", rate=10):
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=duration={seconds}:size={size}:rate={rate}",
                    "-pix_fmt", "yuv420p", str(path)], check=True, timeout=60)


def inventory(folder, *extra):
    return subprocess.run([sys.executable, str(SCRIPT), "--input-dir", str(folder), *extra],
                          capture_output=True, text=True, timeout=60)


def test_every_video_is_described_and_the_report_written(tmp_path):
    make_video(tmp_path / "a" / "clip one.mp4", seconds=2)
    make_video(tmp_path / "b.MOV", size="48x32")
    (tmp_path / "notes.txt").write_text("not a video")
    out = inventory(tmp_path)
    assert out.returncode == 0, out.stdout
    lines = out.stdout.splitlines()
    assert lines[0] == "TOTAL_VIDEOS_TO_PROCESS: 2"
    assert "PROCESSING_VIDEO: 1/2: a/clip one.mp4" in lines
    assert any(line.startswith("SUCCESS: 1/2: a/clip one.mp4 -> 64x36 h264, 10.00 fps, 2.0 s") for line in lines)
    assert lines[-1] == "SUMMARY: 2/2 succeeded, 0 failed, 0 skipped"
    report = json.loads((tmp_path / "inventory.json").read_text())
    assert [v["path"] for v in report["videos"]] == ["a/clip one.mp4", "b.MOV"]
    first = report["videos"][0]
    assert (first["width"], first["height"], first["fps"], first["frames"]) == (64, 36, 10.0, 20)
    assert first["duration_s"] == pytest.approx(2.0, abs=0.05)
    assert report["readable"] == 2 and report["unreadable"] == 0


def test_unreadable_videos_fail_and_the_others_go_on(tmp_path):
    make_video(tmp_path / "good.mp4")
    (tmp_path / "broken.mp4").write_bytes(b"\x00garbage" * 100)
    (tmp_path / "empty.mkv").write_bytes(b"")
    out = inventory(tmp_path)
    assert out.returncode == 1
    failed = [line for line in out.stdout.splitlines() if line.startswith("FAILED: ")]
    assert len(failed) == 2 and any(line.startswith("FAILED: 1/3: broken.mp4: ") for line in failed)
    assert out.stdout.splitlines()[-1] == "SUMMARY: 1/3 succeeded, 2 failed, 0 skipped"
    report = json.loads((tmp_path / "inventory.json").read_text())
    assert [v["readable"] for v in report["videos"]] == [False, False, True]
    assert report["videos"][0]["error"]


def test_its_lines_drive_the_dashboard_patterns(tmp_path):
    from dashboard.progress import LineMatcher, ProgressState, compile_patterns
    from dashboard.registry import load_registry

    make_video(tmp_path / "x.mp4")
    (tmp_path / "y.mp4").write_bytes(b"junk")
    out = inventory(tmp_path)
    step = load_registry(ROOT / "config" / "workflow.json", ROOT).get("inventory")
    matcher = LineMatcher(compile_patterns(dict(step.patterns)))
    state = ProgressState()
    for line in out.stdout.splitlines():
        found = matcher.match(line)
        if found:
            state.apply(*found)
    assert (state.total, state.succeeded, state.failed) == (2, 1, 1)
    assert state.failures[0].item == "y.mp4" and state.fraction == 1.0


def test_a_missing_folder_is_a_usage_error(tmp_path):
    out = inventory(tmp_path / "nope")
    assert out.returncode == 2 and out.stdout.startswith("ERROR: ")


def test_an_empty_folder_is_nothing_to_do(tmp_path):
    out = inventory(tmp_path, "--output", str(tmp_path / "r.json"))
    assert out.returncode == 0 and "TOTAL_VIDEOS_TO_PROCESS: 0" in out.stdout
    assert json.loads((tmp_path / "r.json").read_text())["videos"] == []
