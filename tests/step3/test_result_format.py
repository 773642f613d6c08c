"""STEP3's results against the documented format (docs/result-format.md), in
STEP3's venv: a real run on clips made here writes documents that stepkit's
reader accepts, with exactly the fields of the real sample in docs/samples/ at
every level, CSVs with the sample's header, and the documented file names. The
dashboard's venv reads the same sample (tests/dashboard/test_result_format.py)."""
import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stepkit.result_check import check_document, load_result
from stepkit.scene_results import is_complete, result_paths

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "workflow_scripts" / "step3" / "run_transnet.py"
SAMPLES = REPO / "docs" / "samples"
SAMPLE = json.loads((SAMPLES / "step3-result.sample.json").read_text(encoding="utf-8"))
SAMPLE_CSV = (SAMPLES / "step3-result.sample.csv").read_bytes()


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, timeout=120)


def cut_clip(path):
    """The sample's clip (docs/result-format.md says how it was made): 2 s, a cut, 2 s."""
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=2",
           "-f", "lavfi", "-i", "smptehdbars=size=320x180:rate=25:duration=2",
           "-filter_complex", "[0][1]concat=n=2:v=1:a=0,format=yuv420p",
           "-c:v", "libx264", "-preset", "veryfast", str(path))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One real STEP3 run over: the sample's clip, and two videos sharing a stem."""
    root = tmp_path_factory.mktemp("projects")
    cut_clip(root / "cut-at-2s.mp4")
    pair = root / "pair"
    pair.mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=2", "-pix_fmt", "yuv420p",
           str(pair / "same.mp4"))
    ffmpeg("-i", str(pair / "same.mp4"), "-c", "copy", str(pair / "same.mov"))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("DRY_RUN", None)
    out = subprocess.run([sys.executable, str(SCRIPT), "--input-dir", str(root), "--device", "cpu",
                          "--log-dir", str(tmp_path_factory.mktemp("logs"))],
                         capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    return root


def key_shape(value):
    """The fields at every level: objects by their keys, arrays by their items'
    shape (one shape for all items), other values by nothing."""
    if isinstance(value, dict):
        return {k: key_shape(v) for k, v in value.items()}
    if isinstance(value, list):
        shapes = [key_shape(v) for v in value]
        assert all(s == shapes[0] for s in shapes), "items of one array with different fields"
        return [shapes[0]] if shapes else []
    return None


def documents(root):
    return sorted(root.rglob("*.scenes.json"))


def test_the_documented_names_stem_clash_included(run):
    names = sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file())
    assert names == ["cut-at-2s.csv", "cut-at-2s.mp4", "cut-at-2s.scenes.json",
                     "pair/same.mov", "pair/same.mov.csv", "pair/same.mov.scenes.json",
                     "pair/same.mp4", "pair/same.mp4.csv", "pair/same.mp4.scenes.json"]
    for video in [run / "cut-at-2s.mp4", run / "pair" / "same.mp4", run / "pair" / "same.mov"]:
        paths = result_paths(video, [p for p in video.parent.iterdir() if p.suffix in (".mp4", ".mov")])
        assert paths.csv.exists() and paths.json.exists()
        assert is_complete(video, paths, SAMPLE["threshold"])  # what a re-run checks before skipping


def test_every_document_follows_the_format_with_exactly_the_sample_s_fields(run):
    assert check_document(SAMPLE) == []
    sample_shape = key_shape(SAMPLE)
    assert len(documents(run)) == 3
    for path in documents(run):
        doc = load_result(path)  # raises, naming the field, if it does not follow the format
        assert check_document(doc) == []
        assert key_shape(doc) == sample_shape, path.name


def test_every_csv_has_the_sample_s_header_and_its_json_s_checksum(run):
    header = SAMPLE_CSV.decode("utf-8").splitlines()[0]
    assert header == "No,Timecode In,Timecode Out,Frame In,Frame Out"
    for path in documents(run):
        doc = load_result(path)
        data = (path.parent / doc["csv"]["file"]).read_bytes()
        assert data.decode("utf-8").splitlines()[0] == header
        assert hashlib.sha256(data).hexdigest() == doc["csv"]["sha256"]
        rows = list(csv.reader(data.decode("utf-8").splitlines()))[1:]
        assert rows == [[str(s["no"]), s["timecode_in"], s["timecode_out"], str(s["frame_in"]), str(s["frame_out"])]
                        for s in doc["scenes"]]
        assert (path.parent / doc["video"]["file"]).is_file()


def test_the_sample_s_clip_gives_the_sample_s_scenes(run):
    """Made the way the sample was, the clip gives the same CSV, byte for byte,
    and the same scenes and video properties: the sample is what STEP3 writes."""
    assert (run / "cut-at-2s.csv").read_bytes() == SAMPLE_CSV
    doc = load_result(run / "cut-at-2s.scenes.json")
    assert doc["scenes"] == SAMPLE["scenes"]
    same = ("codec", "width", "height", "fps", "frame_rate", "frame_count")
    assert {k: doc["video"][k] for k in same} == {k: SAMPLE["video"][k] for k in same}
    assert doc["predictions"]["single_frame"][49] > 0.5 > max(doc["predictions"]["single_frame"][50:])
