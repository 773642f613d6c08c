"""Helpers of the results-view tests: timelines at any rate, a sample result."""
import shutil
from pathlib import Path

from dashboard.results.timecode import rate_of
from stepkit.scene_results import make_document, result_paths, scene_rows, video_identity, write_results
from dashboard.results.timeline import Timeline

RATES = {  # name: (frame_rate as a result states it, fps)
    "23.976": ("24000/1001", 23.976023976),
    "24": ("24/1", 24.0),
    "25": ("25/1", 25.0),
    "29.97DF": ("30000/1001", 29.97002997),
    "30": ("30/1", 30.0),
    "50": ("50/1", 50.0),
    "59.94DF": ("60000/1001", 59.94005994),
    "60": ("60/1", 60.0),
}


def scenes_for(frame_count: int) -> list:
    """Scenes over an hour and a bit: cuts around the drop-frame minute marks
    (1800, 17982, 107892 at 29.97), a one-frame scene, transition gaps."""
    cuts = sorted({c for c in (2, 3, 1799, 1800, 1801, 3598, 17982, 17983, 54000, 107892, 123457)
                   if c < frame_count})
    scenes, start = [], 1
    for cut in cuts:
        scenes.append((start, cut - 1))
        start = cut
    scenes.append((start, frame_count))
    # Transition frames between two scenes belong to neither: leave gaps.
    scenes[3] = (scenes[3][0], scenes[3][1] - 0)
    scenes[5] = (scenes[5][0] + 2, scenes[5][1])
    return scenes


def timeline(rate_name: str, frame_count: int = 130000, name: str = "clip.mp4", folder: Path = Path("/tmp"),
             scenes=None) -> Timeline:
    frame_rate, fps = RATES[rate_name]
    return Timeline(name=name, path=f"sub/{name}", file=folder / name, rate=rate_of(frame_rate, fps),
                    frame_count=frame_count, width=1920, height=1080,
                    scenes=scenes or scenes_for(frame_count), source="review", note="a test list", document={})


def copy_sample_result(fixture: Path, projects: Path) -> Path:
    """The sample video and its real STEP3 result in ``projects/demo``."""
    demo = projects / "demo"
    demo.mkdir(parents=True, exist_ok=True)
    for name in ("sample.mp4", "sample.csv", "sample.scenes.json"):
        shutil.copy2(fixture / name, demo / name)
    return demo / "sample.mp4"


# -- real STEP3 results ------------------------------------------------------------------
import subprocess  # noqa: E402
import tempfile  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
_SAMPLE_RESULT: dict = {}


def run_step3(input_dir: Path, *extra: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """The real STEP3, in its own venv, on ``input_dir``."""
    proc = subprocess.run([str(ROOT / "transnet_env" / "bin" / "python"),
                           str(ROOT / "workflow_scripts" / "step3" / "run_transnet.py"), "--input-dir", str(input_dir),
                           "--log-dir", str(Path(input_dir).parent / "step3-logs"), *extra],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def sample_result() -> Path:
    """A folder holding the sample video and its real STEP3 result, made once
    per test process (STEP3 takes half a minute to a minute on the sample)."""
    if "dir" not in _SAMPLE_RESULT:
        folder = Path(tempfile.mkdtemp(prefix="step3-sample-")) / "in"
        folder.mkdir()
        shutil.copy2(ROOT / "projects" / "demo" / "sample.mp4", folder / "sample.mp4")
        run_step3(folder)
        _SAMPLE_RESULT["dir"] = folder
    return _SAMPLE_RESULT["dir"]


def make_clip(path: Path, seconds=(1, 1), size="64x36", rate="25", audio=False) -> Path:
    """A clip of distinct sources, one after the other: a hard cut between each."""
    sources = ["testsrc2", "smptehdbars", "rgbtestsrc", "smptebars"]
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
    for i, s in enumerate(seconds):
        cmd += ["-f", "lavfi", "-i", f"{sources[i % 4]}=size={size}:rate={rate}:duration={s}"]
    n = len(seconds)
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={sum(seconds)}"]
    graph = "".join(f"[{i}:v]" for i in range(n)) + f"concat=n={n}:v=1:a=0,format=yuv420p[v]"
    cmd += ["-filter_complex", graph, "-map", "[v]"]
    if audio:
        cmd += ["-map", f"{n}:a", "-c:a", "aac"]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-g", "250", str(path)]
    subprocess.run(cmd, check=True, timeout=120)
    return path


def write_result(video, frames=50, scenes=((0, 24), (25, 49)), started="2026-12-03T10:00:00+00:00"):
    rows = scene_rows(list(scenes), [i / 25 for i in range(frames)], 25.0)
    doc = make_document(
        video={"file": video.name, "identity": video_identity(video), "codec": "h264", "width": 64, "height": 36,
               "fps": 25.0, "frame_rate": "25/1", "duration_s": 2.0, "frame_count": frames, "decoded_span_s": 2.0,
               "decode_errors": 0, "decoded_in_segments": 1},
        threshold=0.5, rows=rows, model={"name": "TransNetV2", "weights_file": "w", "weights_sha256": "a" * 64},
        run={"device": "cpu", "precision": "fp32", "torchscript": False, "implementation": ["eager"]},
        timings={"started_at": started, "wall_s": 1.0, "inference_s": 1.0, "model_load_s": 1.0},
        single_frame=[0.9 if i == 24 else 0.0 for i in range(frames)], all_frames=[0.0] * frames)
    write_results(result_paths(video, [video]), rows, doc)
    return doc
