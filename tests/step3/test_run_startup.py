"""A run's start: the model loads in the inference thread while the
decoders start on the first videos, and a model that cannot be set up ends
the run cleanly. In-process (to slow the load down or break it), with the real
weights, real decoder processes and a real clip."""
import io
import time

import psutil
import pytest
import torch

from shots import driver
from shots.frames import ffmpeg_source
from shots.model import predictor as inference
from conftest import copy_to, load_json
from shots.report import Reporter
from shots.config import load_config


def run_in_process(folder, logs, *args):
    out = io.StringIO()
    config = load_config(["--input-dir", str(folder), "--log-dir", str(logs), "--device", "cpu", *args],
                         environ={})
    code = driver.run(config, Reporter(stream=out))
    return code, out.getvalue().splitlines()


def step_processes():
    """Our children but multiprocessing's resource tracker (it lives as long as
    the process that first made shared memory: this test process)."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "resource_tracker" not in " ".join(p.cmdline()):
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def first(lines, prefix):
    return next(i for i, ln in enumerate(lines) if ln.startswith(prefix))


def test_decoding_starts_while_the_model_loads(tmp_path, media, monkeypatch):
    copy_to(media["short"], tmp_path / "p", "clip.mp4")
    real_load, real_take = inference.Predictor.load, ffmpeg_source.Decoder.take
    load_started, frames_taken = [], []

    def load(self):
        load_started.append(time.monotonic())
        time.sleep(3.0)  # a slow GPU start
        real_load(self)

    def take(self, slot, frames):
        frames_taken.append(time.monotonic())
        return real_take(self, slot, frames)
    monkeypatch.setattr(inference.Predictor, "load", load)
    monkeypatch.setattr(ffmpeg_source.Decoder, "take", take)
    code, lines = run_in_process(tmp_path / "p", tmp_path / "logs")
    assert code == 0, lines
    # Decoded frames came out of the decoder's ring while the model was loading.
    assert frames_taken and frames_taken[0] < load_started[0] + 3.0
    assert first(lines, "PROCESSING_VIDEO: 1/1: clip.mp4") < first(lines, "DEVICE: cpu")
    assert "SUMMARY: 1/1 succeeded, 0 failed, 0 skipped" in lines
    assert load_json(tmp_path / "p" / "clip.scenes.json")["video"]["frame_count"] > 0


def test_a_model_that_cannot_be_set_up_ends_the_run_cleanly(tmp_path, media, sample_video, monkeypatch):
    """TorchScript required, tracing fails: one ERROR line, exit 2, nothing
    written, and the decoders already at work are stopped."""
    def refuse(*_args, **_kwargs):
        raise RuntimeError("tracer refused this model")
    monkeypatch.setattr(torch.jit, "trace", refuse)
    copy_to(media["short"], tmp_path / "p", "a.mp4")
    copy_to(sample_video, tmp_path / "p", "b.mp4")
    code, lines = run_in_process(tmp_path / "p", tmp_path / "logs", "--torchscript", "--no-torchscript-auto-fallback",
                             "--num-workers", "2")
    assert code == 2
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    assert errors == ["ERROR: TorchScript tracing failed (tracer refused this model) and "
                      "torchscript_auto_fallback is off"]
    assert lines[-1] == "SUMMARY: 0/2 succeeded, 2 failed, 0 skipped"
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["a.mp4", "b.mp4"]
    deadline = time.monotonic() + 10
    while step_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert step_processes() == []


@pytest.mark.parametrize("content", [None, b"not a checkpoint"], ids=["missing", "corrupt"])
def test_unusable_weights_stop_the_run_before_any_decoder_starts(tmp_path, media, content):
    copy_to(media["short"], tmp_path / "p", "clip.mp4")
    weights = tmp_path / "w.pth"
    if content is not None:
        weights.write_bytes(content)
    code, lines = run_in_process(tmp_path / "p", tmp_path / "logs", "--weights-path", str(weights))
    assert code == 2
    assert not any(ln.startswith("PROCESSING_VIDEO") for ln in lines)
    assert len([ln for ln in lines if ln.startswith("ERROR:")]) == 1
    assert step_processes() == []
