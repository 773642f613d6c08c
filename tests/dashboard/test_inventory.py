"""The inventory step, run as the dashboard runs it: its venv's Python, a real folder."""
import json
import os
import stat
import subprocess
import sys

import pytest
from dash_support import ROOT

SCRIPT = ROOT / "workflow_scripts" / "inventory" / "inventory.py"
# Root reads whatever the permissions say; without these two capabilities it
# meets them like anyone else (so the unreadable-folder test holds as root too).
OBEY_PERMISSIONS = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                    "--bounding-set=-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else []


def make_video(path, seconds=1, size="64x36", rate=10):
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=duration={seconds}:size={size}:rate={rate}",
                    "-pix_fmt", "yuv420p", str(path)], check=True, timeout=60)


def make_cover(path):
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=red:size=32x32", "-frames:v", "1",
                    str(path)], check=True, timeout=60)
    return path


def inventory(folder, *extra, prefix=()):
    return subprocess.run([*prefix, sys.executable, str(SCRIPT), "--input-dir", str(folder), *extra],
                          capture_output=True, text=True, timeout=60)


def test_every_video_is_described_and_the_report_written(tmp_path):
    make_video(tmp_path / "a" / "clip one.mp4", seconds=2)
    make_video(tmp_path / "b.MOV", size="48x32")
    (tmp_path / "notes.txt").write_text("not a video")
    out = inventory(tmp_path)
    assert out.returncode == 0, out.stdout
    lines = out.stdout.splitlines()
    assert lines[0] == "TOTAL_VIDEOS_TO_PROCESS: 2"
    # STEP3's order (stepkit's discovery): a folder's videos, then its sub-folders.
    assert lines[1] == "PROCESSING_VIDEO: 1/2: b.MOV"
    assert "PROCESSING_VIDEO: 2/2: a/clip one.mp4" in lines
    assert any(line.startswith("SUCCESS: 2/2: a/clip one.mp4 -> 64x36 h264, 10.00 fps, 2.0 s") for line in lines)
    assert lines[-1] == "SUMMARY: 2/2 succeeded, 0 failed, 0 skipped"
    report_file = tmp_path / "inventory.json"
    report = json.loads(report_file.read_text())
    assert stat.S_IMODE(report_file.stat().st_mode) == 0o644
    assert [v["path"] for v in report["videos"]] == ["b.MOV", "a/clip one.mp4"]
    first = report["videos"][1]
    assert (first["width"], first["height"], first["fps"], first["frames"]) == (64, 36, 10.0, 20)
    assert first["duration_s"] == pytest.approx(2.0, abs=0.05)
    assert report["readable"] == 2 and report["unreadable"] == 0


def test_unreadable_videos_fail_and_the_others_go_on(tmp_path):
    make_video(tmp_path / "good.mp4")
    (tmp_path / "broken.mp4").write_bytes(b"\x00garbage" * 100)
    (tmp_path / "empty.mkv").write_bytes(b"")
    (tmp_path / "gone.mp4").symlink_to(tmp_path / "deleted.mp4")
    out = inventory(tmp_path)
    assert out.returncode == 1
    failed = [line for line in out.stdout.splitlines() if line.startswith("FAILED: ")]
    assert len(failed) == 3
    assert "FAILED: 1/4: broken.mp4: Invalid data found when processing input" in failed
    assert "FAILED: 3/4: gone.mp4: cannot read it: No such file or directory" in failed
    assert out.stdout.splitlines()[-1] == "SUMMARY: 1/4 succeeded, 3 failed, 0 skipped"
    report = json.loads((tmp_path / "inventory.json").read_text())
    assert [v["readable"] for v in report["videos"]] == [False, False, False, True]
    assert report["videos"][0]["error"] == "Invalid data found when processing input"


def test_cover_art_is_no_video_as_for_step3(tmp_path):
    """An audio file with its cover picture has a "video" stream to ffprobe:
    one attached picture, which STEP3 does not analyse. Inventory fails it the
    same way; a real video that carries a cover is described by its video."""
    cover = make_cover(tmp_path / "cover.png")
    folder = tmp_path / "projects"
    folder.mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=duration=1", "-i", str(cover),
                    "-map", "0:a", "-map", "1:v", "-c:a", "aac", "-c:v", "png", "-disposition:v:0", "attached_pic",
                    str(folder / "song.mp4")], check=True, timeout=60)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=duration=1:size=64x36:rate=10",
                    "-i", str(cover), "-map", "1:v", "-map", "0:v", "-c:v:0", "png", "-c:v:1", "libx264",
                    "-pix_fmt", "yuv420p", "-disposition:v:0", "attached_pic", "-disposition:v:1", "default",
                    str(folder / "with cover.mp4")], check=True, timeout=60)
    out = inventory(folder)
    assert out.returncode == 1, out.stdout
    lines = out.stdout.splitlines()
    assert "FAILED: 1/2: song.mp4: no video stream" in lines
    assert "SUCCESS: 2/2: with cover.mp4 -> 64x36 h264, 10.00 fps, 1.0 s" in lines
    report = json.loads((folder / "inventory.json").read_text())
    assert report["videos"][0] == {"path": "song.mp4", "size": (folder / "song.mp4").stat().st_size,
                                   "readable": False, "error": "no video stream"}


def test_linked_folders_are_followed_once_and_the_dashboard_lists_the_same(tmp_path):
    from dashboard.projects import list_videos

    projects, elsewhere = tmp_path / "projects", tmp_path / "elsewhere"
    make_video(projects / "near.mp4")
    make_video(elsewhere / "far.mp4")
    (projects / "link").symlink_to(elsewhere)
    (projects / "again").symlink_to(elsewhere)  # the same folder by a second name
    (projects / "loop").symlink_to(projects)    # a link back up
    out = inventory(projects)
    assert out.returncode == 0, out.stdout
    report = json.loads((projects / "inventory.json").read_text())
    assert [v["path"] for v in report["videos"]] == ["near.mp4", "again/far.mp4"]
    listed = list_videos(projects)  # the same files, listed by path
    assert [v["path"] for v in listed["videos"]] == ["again/far.mp4", "near.mp4"]
    assert (listed["count"], listed["truncated"], listed["missing"]) == (2, False, False)
    assert listed["videos"][0]["size"] == (elsewhere / "far.mp4").stat().st_size
    few = list_videos(projects, limit=1)
    assert (len(few["videos"]), few["count"], few["truncated"]) == (1, 2, True)
    assert list_videos(tmp_path / "nope") == {"videos": [], "count": 0, "truncated": False, "missing": True}


def test_unreadable_folders(tmp_path):
    make_video(tmp_path / "ok" / "v.mp4")
    locked = tmp_path / "locked"
    make_video(locked / "hidden.mp4")
    locked.chmod(0)
    try:
        out = inventory(tmp_path, prefix=OBEY_PERMISSIONS)
        assert out.returncode == 0, out.stdout + out.stderr
        lines = out.stdout.splitlines()
        assert lines[0] == "WARNING: locked: folder skipped, cannot read it: Permission denied"
        assert lines[1:3] == ["TOTAL_VIDEOS_TO_PROCESS: 1", "PROCESSING_VIDEO: 1/1: ok/v.mp4"]
        out = inventory(locked, prefix=OBEY_PERMISSIONS)
        assert out.returncode == 2
        assert out.stdout.startswith("ERROR: cannot read the ") and out.stdout.count("\n") == 1
        assert out.stdout.endswith(f" {locked}: Permission denied\n")
    finally:
        locked.chmod(0o755)


def test_the_report_replaces_the_old_one_whole(tmp_path):
    make_video(tmp_path / "a.mp4")
    (tmp_path / "inventory.json").write_text("the old report")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".inventory-tmp-{int(gone.stdout)}-x.part"  # left by a killed run
    stale.write_text("{half")
    out = inventory(tmp_path)
    assert out.returncode == 0
    assert json.loads((tmp_path / "inventory.json").read_text())["readable"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "inventory.json"]
    out = inventory(tmp_path, "--output", str(tmp_path / "no" / "such" / "r.json"))
    assert out.returncode == 2
    assert out.stdout.splitlines()[-1] == (f"ERROR: cannot write the report {tmp_path}/no/such/r.json: "
                                           "No such file or directory")


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
