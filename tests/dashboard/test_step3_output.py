"""The real STEP3's output through the dashboard's parser: the contract, kept by the step itself."""
import json
import shutil
import subprocess

import pytest
from dash_support import ROOT, protocol_patterns

from dashboard.progress import LineMatcher, ProgressState, compile_patterns

pytestmark = pytest.mark.slow


def matcher() -> LineMatcher:
    return LineMatcher(compile_patterns(protocol_patterns()))


def test_real_step3_output_parses(tmp_path):
    """STEP3's dry run prints the lines it would print for real; they must parse."""
    python = ROOT / "transnet_env" / "bin" / "python"
    assert python.exists(), "transnet_env is missing: run make setup"
    projects = tmp_path / "projects" / "demo"
    projects.mkdir(parents=True)
    shutil.copy(ROOT / "projects" / "demo" / "sample.mp4", projects / "sample.mp4")
    out = subprocess.run(
        [str(python), str(ROOT / "workflow_scripts/step3/run_transnet.py"), "--input-dir", str(tmp_path / "projects"),
         "--dry-run", "--log-dir", str(tmp_path / "logs")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    m = matcher()
    state = ProgressState()
    keys = []
    for line in out.stdout.splitlines():
        found = m.match(line)
        if found:
            keys.append(found[0])
            state.apply(*found)
    assert keys[:2] == ["total", "item"]
    assert state.total == 1 and state.item == "demo/sample.mp4"
    config_line = next(line for line in out.stdout.splitlines() if line.startswith("CONFIG_EFFECTIVE: "))
    assert json.loads(config_line.split(": ", 1)[1])["dry_run"] is True


def test_a_real_step3_run_on_several_videos_parses(tmp_path):
    """A real run (model included) on videos decoded side by side: lines of
    different items interleave; names hold the separators; an extension the
    default list lacks (.mpg). The state must follow every item by its index."""
    python = ROOT / "transnet_env" / "bin" / "python"
    assert python.exists(), "transnet_env is missing: run make setup"
    folder = tmp_path / "projects"
    folder.mkdir()
    for name, codec in (("a: b -> c.mp4", "libx264"), ("plain.mpg", "mpeg2video"), ("x.mp4", "libx264")):
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=5",
                        "-c:v", codec, str(folder / name)], check=True)
    (folder / "broken.mp4").write_bytes(b"\x00\x01not a video" * 1000)
    out = subprocess.run(
        [str(python), str(ROOT / "workflow_scripts/step3/run_transnet.py"), "--input-dir", str(folder),
         "--log-dir", str(tmp_path / "logs"), "--num-workers", "2", "--extensions", ".mp4,.mpg"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    m = matcher()
    state = ProgressState()
    fractions, unmatched = [], []
    for line in out.stdout.splitlines():
        keyword = line.split(":", 1)[0]
        found = m.match(line)
        if found:
            state.apply(*found)
            fractions.append(state.fraction)
        elif keyword in ("TOTAL_VIDEOS_TO_PROCESS", "PROCESSING_VIDEO", "FRAMES", "SUCCESS", "FAILED", "SKIPPED",
                         "SUMMARY"):
            unmatched.append(line)
    assert unmatched == []
    assert (state.total, state.succeeded, state.failed, state.skipped) == (4, 3, 1, 0)
    assert sorted(state.names.values()) == ["a: b -> c.mp4", "broken.mp4", "plain.mpg", "x.mp4"]
    assert [(f.item, f.detail) for f in state.failures] == [
        ("broken.mp4", "cannot read video: Invalid data found when processing input")]
    assert state.last_success.detail.endswith(" scenes)") or state.last_success.detail.endswith(" scene)")
    numbers = [f for f in fractions if f is not None]
    assert numbers == sorted(numbers), "the bar went backwards"
    assert numbers[-1] == 1.0
