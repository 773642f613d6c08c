"""The split step on a generated clip with known cuts (1 s, 2 s, 1 s at 25 fps,
with audio), analysed by the real STEP3 once: each output's frames counted by
ffprobe, their sum the video's; a review with a gap; stream copy; a re-run
skips; a video with no result fails alone; the lines follow the contract."""
import json
import re
import shutil
import subprocess
import sys

import pytest
from dash_support import ROOT, protocol_patterns
from results_support import make_clip, run_step3, write_result

SCRIPT = ROOT / "workflow_scripts" / "split" / "split_shots.py"


def frames_of(path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                          "stream=codec_type,nb_read_frames", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True)
    return {s["codec_type"]: int(s["nb_read_frames"]) for s in json.loads(out.stdout)["streams"]}


def split(folder, *extra):
    return subprocess.run([sys.executable, str(SCRIPT), "--input-dir", str(folder), *extra],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("split-source")
    make_clip(folder / "three cuts.mp4", (1, 2, 1), audio=True)
    run_step3(folder)
    return folder


@pytest.fixture
def projects(tmp_path, analysed):
    folder = tmp_path / "projects"
    shutil.copytree(analysed, folder, copy_function=shutil.copy2,
                    ignore=shutil.ignore_patterns("step3-logs"))
    return folder


def shots_of(projects):
    return sorted((projects / ".shots" / "three cuts").glob("*.mp4"))


def test_split_is_frame_accurate_keeps_audio_and_a_rerun_skips(projects):
    rows = (projects / "three cuts.csv").read_text().splitlines()[1:]
    scenes = [(int(r.split(",")[3]), int(r.split(",")[4])) for r in rows]
    assert scenes == [(1, 25), (26, 75), (76, 100)]  # STEP3 found the three shots
    first = split(projects)
    assert first.returncode == 0, first.stdout + first.stderr
    files = shots_of(projects)
    assert [f.name for f in files] == [f"three cuts-scene-00{i}.mp4" for i in (1, 2, 3)]
    counts = [frames_of(f) for f in files]
    assert [c["video"] for c in counts] == [25, 50, 25]
    assert sum(c["video"] for c in counts) == frames_of(projects / "three cuts.mp4")["video"] == 100
    assert all(c.get("audio", 0) > 0 for c in counts)
    marker = json.loads((projects / ".shots" / "three cuts" / "shots.json").read_text())
    assert marker["source"] == "step3" and marker["mode"] == "reencode"
    assert "SUCCESS: 1/1: three cuts.mp4 -> .shots/three cuts (3 scenes)" in first.stdout

    again = split(projects)
    assert again.returncode == 0 and "SKIPPED: 1/1: three cuts.mp4: shots complete" in again.stdout
    assert [f.stat().st_mtime_ns for f in shots_of(projects)] == [f.stat().st_mtime_ns for f in files]
    assert not list(projects.rglob(".split-tmp-*"))

    # Every line the dashboard reads matches the patterns it names.
    patterns = {k: re.compile(v) for k, v in protocol_patterns().items()}
    for line in first.stdout.splitlines():
        if line.startswith(("TOTAL_", "PROCESSING_", "FRAMES:", "SUCCESS:", "SUMMARY:")):
            assert any(p.search(line) for p in patterns.values()), line


def test_a_review_with_a_transition_gap_is_what_gets_cut(projects):
    doc = json.loads((projects / "three cuts.scenes.json").read_text())
    review = {"format": "step3-review/1", "video": {"file": "three cuts.mp4", "identity": doc["video"]["identity"],
                                                    "frame_count": 100},
              "based_on": {}, "threshold": None, "scenes": [[1, 20], [26, 60], [61, 100]], "saved_at": "x"}
    (projects / "three cuts.review.json").write_text(json.dumps(review))
    result = split(projects)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 shots from its review" in result.stdout
    assert [frames_of(f)["video"] for f in shots_of(projects)] == [20, 35, 40]


def test_stream_copy_says_it_snaps_to_keyframes(projects):
    result = split(projects, "--copy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING: stream copy: each shot starts at the keyframe" in result.stdout
    assert len(shots_of(projects)) == 3
    assert json.loads((projects / ".shots" / "three cuts" / "shots.json").read_text())["mode"] == "copy"


def test_a_video_without_result_fails_alone(projects):
    make_clip(projects / "a" / "new.mp4" if (projects / "a").mkdir() is None else None, (1,))
    result = split(projects)
    assert result.returncode == 1
    assert "FAILED: 1/2: three cuts.mp4" not in result.stdout
    assert "FAILED: 2/2: a/new.mp4: not analysed yet: run STEP3 first" in result.stdout
    assert "SUMMARY: 1/2 succeeded, 1 failed, 0 skipped" in result.stdout
    assert not (projects / ".shots" / "a").exists()


def test_a_single_scene_is_one_file(projects):
    doc = json.loads((projects / "three cuts.scenes.json").read_text())
    review = {"format": "step3-review/1", "video": {"file": "three cuts.mp4", "identity": doc["video"]["identity"],
                                                    "frame_count": 100},
              "based_on": {}, "threshold": None, "scenes": [[1, 100]], "saved_at": "x"}
    (projects / "three cuts.review.json").write_text(json.dumps(review))
    result = split(projects)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [frames_of(f)["video"] for f in shots_of(projects)] == [100]


def test_cancel_leaves_no_half_written_folder(tmp_path):
    """SIGTERM, as the dashboard's Cancel sends it, while ffmpeg cuts: exit 143,
    no temporary folder, no folder that looks done."""
    import signal

    projects = tmp_path / "projects"
    projects.mkdir()
    # A minute at 640x360: ffmpeg's first progress report comes after half a
    # second of work, long before it is done, even on a fast machine.
    video = make_clip(projects / "long.mp4", (20, 20, 20), size="640x360")
    write_result(video, frames=1500, scenes=((0, 499), (500, 999), (1000, 1499)))
    proc = subprocess.Popen([sys.executable, "-u", str(SCRIPT), "--input-dir", str(projects)],
                            stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("FRAMES: 1/1:"):
            break
    proc.send_signal(signal.SIGTERM)
    proc.stdout.read()
    assert proc.wait(timeout=60) == 143
    assert not list(projects.rglob(".split-tmp-*"))
    assert not (projects / ".shots" / "long").exists()
