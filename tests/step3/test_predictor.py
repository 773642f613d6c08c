"""The Predictor's set-up fallbacks, in-process with the real weights.

A GPU cannot exist here, so where a test needs "a GPU is there" it says so to
torch (``is_available`` and friends); everything after that is real: this CPU
build of torch then fails to put the model on CUDA, the way a broken driver
would, and the predictor must carry on on the CPU.
"""
import io

import numpy as np
import pytest
import torch

from shots.model.predictor import Predictor, SetupError
from shots.report import Reporter
from shots.windows import WINDOW


def make(weights_path, device="cpu", batch="auto", torchscript=False, fallback=True):
    out = io.StringIO()
    predictor = Predictor(weights_path, device, False, torchscript, fallback, batch, "auto", Reporter(stream=out))
    return predictor, out


def printed(out: io.StringIO, prefix: str) -> list:
    return [ln for ln in out.getvalue().splitlines() if ln.startswith(prefix)]


@pytest.fixture
def a_gpu_that_fails(monkeypatch):
    """torch believes in one CUDA device; using it fails (this torch has no CUDA)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Imaginary GPU")


def test_cuda_failing_at_load_falls_back_to_the_cpu_with_a_cpu_batch(weights_path, a_gpu_that_fails):
    predictor, out = make(weights_path, device="cuda", batch=32)
    predictor.load()
    assert predictor.primary.device.type == "cpu" and not predictor.gpu_usable
    warnings = printed(out, "WARNING:")
    assert len(warnings) == 1 and "loading the model on cuda:0 failed" in warnings[0] and "using the CPU" in warnings[0]
    assert printed(out, "DEVICE:") == ["DEVICE: cpu (fallback after a CUDA error while loading)"]
    # The 32 windows asked for were the GPU's; the CPU keeps its own batch.
    assert predictor.batch_size == 1
    probs, backend = predictor.run(np.zeros((3, WINDOW, 27, 48, 3), dtype=np.uint8))
    assert probs.shape == (3, 2, 50) and backend.device.type == "cpu"


def test_cuda_failing_when_asked_about_the_device_falls_back_to_the_cpu(weights_path, monkeypatch):
    def broken():
        raise RuntimeError("CUDA driver error: invalid argument")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", broken)
    predictor, out = make(weights_path, device="auto")
    predictor.load()
    assert predictor.primary.device.type == "cpu"
    assert any("CUDA driver error: invalid argument" in ln for ln in printed(out, "WARNING:"))
    assert printed(out, "DEVICE:") == ["DEVICE: cpu (fallback after a CUDA error while looking for a GPU)"]


def test_an_explicit_batch_size_is_kept_on_a_cpu_chosen_by_config(weights_path):
    predictor, _ = make(weights_path, device="cpu", batch=3)
    predictor.load()
    assert predictor.batch_size == 3


def test_tracing_failure_falls_back_to_eager_when_allowed(weights_path, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise RuntimeError("tracer refused this model")
    monkeypatch.setattr(torch.jit, "trace", refuse)
    predictor, out = make(weights_path, torchscript=True, fallback=True)
    predictor.load()
    assert predictor.primary.kind == "eager"
    assert any("TorchScript tracing failed (tracer refused this model): using the eager model" in ln
               for ln in printed(out, "WARNING:"))
    probs, _ = predictor.run(np.zeros((1, WINDOW, 27, 48, 3), dtype=np.uint8))
    assert probs.shape == (1, 2, 50)


def test_tracing_failure_without_fallback_is_one_clear_error(weights_path, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise RuntimeError("tracer refused this model")
    monkeypatch.setattr(torch.jit, "trace", refuse)
    predictor, _ = make(weights_path, torchscript=True, fallback=False)
    with pytest.raises(SetupError, match=r"^TorchScript tracing failed \(tracer refused this model\) "
                                         r"and torchscript_auto_fallback is off$"):
        predictor.load()


def test_a_torchscript_model_failing_at_run_time_falls_back_to_eager(weights_path):
    predictor, out = make(weights_path, torchscript=True, fallback=True)
    predictor.load()
    assert predictor.primary.kind == "torchscript"
    windows = np.random.default_rng(3).integers(0, 256, (1, WINDOW, 27, 48, 3), dtype=np.uint8)
    expected, _ = predictor.run(windows)

    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("the scripted graph broke")
    predictor.primary.module = Broken()
    probs, backend = predictor.run(windows)
    assert backend.kind == "eager"
    assert any("TorchScript model failed (the scripted graph broke): using the eager model" in ln
               for ln in printed(out, "WARNING:"))
    assert np.abs(probs - expected).max() <= 1e-5


def test_the_cpu_backend_of_a_gpu_run_is_a_stand_in(weights_path):
    """What the engine uses to redo a video after a CUDA failure: batch 1."""
    predictor, _ = make(weights_path, device="cpu", batch=16)
    predictor.load()
    predictor._cpu = None  # as on a GPU run, where the CPU backend is made on demand
    assert predictor.cpu_backend().batch == 1
    assert predictor.batch_size == 16
