"""GPU paths, opt-in: ``pytest tests/step3 -m gpu --run-gpu`` on a machine with
an NVIDIA GPU (the lent device; CI has none). The real script, or the real run
in-process where a CUDA failure is injected: a healthy card cannot be made to
fail, so ``Backend.__call__`` raises what a driver fault raises."""
import io

import numpy as np
import pytest

from conftest import copy_to, lines, load_json, reference_frames, run_step3
from shots.windows import WindowBuilder

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", autouse=True)
def need_cuda():
    import torch
    if not torch.cuda.is_available():
        pytest.fail("--run-gpu was given but PyTorch sees no CUDA device")


def predictions(path):
    meta = load_json(path)
    return np.array(meta["predictions"]["single_frame"]), meta


def test_cuda_fp32_and_fp16_give_the_cpu_scenes(tmp_path, sample_video, media):
    for name in ("cpu", "fp32", "fp16"):
        copy_to(sample_video, tmp_path / name, "sample.mp4")
        copy_to(media["cuts"], tmp_path / name, "cuts.mp4")
    cpu = run_step3("--input-dir", tmp_path / "cpu", "--log-dir", tmp_path / "logs", "--device", "cpu")
    fp32 = run_step3("--input-dir", tmp_path / "fp32", "--log-dir", tmp_path / "logs", "--device", "cuda")
    fp16 = run_step3("--input-dir", tmp_path / "fp16", "--log-dir", tmp_path / "logs", "--device", "cuda",
                     "--mixed-precision")
    for proc in (cpu, fp32, fp16):
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "DEVICE: cuda:0 (CUDA requested and available" in fp32.stdout
    for stem in ("sample", "cuts"):
        p_cpu, _ = predictions(tmp_path / "cpu" / f"{stem}.scenes.json")
        p32, m32 = predictions(tmp_path / "fp32" / f"{stem}.scenes.json")
        p16, m16 = predictions(tmp_path / "fp16" / f"{stem}.scenes.json")
        assert (m32["device"], m32["precision"]) == ("cuda:0", "fp32")
        assert (m16["device"], m16["precision"]) == ("cuda:0", "fp16")
        print(f"{stem}: max |dp| cuda fp32 vs cpu {np.abs(p32 - p_cpu).max():.2e}, "
              f"fp16 vs fp32 {np.abs(p16 - p32).max():.2e}")
        assert np.abs(p32 - p_cpu).max() <= 2e-3
        assert np.abs(p16 - p32).max() <= 5e-3
        scenes_cpu = (tmp_path / "cpu" / f"{stem}.csv").read_text()
        assert (tmp_path / "fp32" / f"{stem}.csv").read_text() == scenes_cpu
        assert (tmp_path / "fp16" / f"{stem}.csv").read_text() == scenes_cpu


def test_seed_case_twelve_videos_two_workers_on_cuda(tmp_path, sample_video, media):
    """The case that broke the system we replace: 12 videos, 2 workers, CUDA."""
    folder = tmp_path / "p"
    for i in range(4):
        copy_to(sample_video, folder, f"sample_{i}.mp4")
        copy_to(media["cuts"], folder, f"cuts_{i}.mp4")
        copy_to(media["short"], folder, f"short_{i}.mkv")
    proc = run_step3("--input-dir", folder, "--log-dir", tmp_path / "logs", "--device", "cuda",
                     "--num-workers", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lines(proc, "SUMMARY:") == ["SUMMARY: 12/12 succeeded, 0 failed, 0 skipped"]
    assert "WARNING" not in proc.stdout
    for i in range(4):
        assert load_json(folder / f"sample_{i}.scenes.json")["device"] == "cuda:0"


def run_in_process(*args):
    from shots import driver
    from shots.config import load_config
    from shots.report import Reporter
    out = io.StringIO()
    code = driver.run(load_config([str(a) for a in args], environ={}), Reporter(stream=out))
    return code, out.getvalue().splitlines()


def fail_cuda_call(monkeypatch, number: int) -> list:
    """The ``number``th call of a CUDA backend raises a CUDA error; returns the
    list of CUDA calls made (their batch sizes)."""
    from shots.model.backend import Backend
    real_call, calls = Backend.__call__, []

    def call(self, windows):
        if self.device.type == "cuda":
            calls.append(len(windows))
            if len(calls) == number:
                raise RuntimeError(f"CUDA error: injected fault (CUDA call {number})")
        return real_call(self, windows)
    monkeypatch.setattr(Backend, "__call__", call)
    return calls


def make_predictor(weights_path, batch, device="cuda"):
    from shots.model.predictor import Predictor
    from shots.report import Reporter
    out = io.StringIO()
    return Predictor(weights_path, device, False, False, True, batch, "auto", Reporter(stream=out)), out


def windows_of(video) -> np.ndarray:
    builder = WindowBuilder()
    return np.stack(builder.push(reference_frames(video)) + builder.finish())


def test_a_cuda_failure_redoes_that_video_on_the_cpu(tmp_path, media, monkeypatch):
    """The warm-up is CUDA call 1; call 4 falls inside the first clip (batches
    of one window), which is redone on the CPU while the others stay on the GPU."""
    calls = fail_cuda_call(monkeypatch, 4)
    folder = tmp_path / "p"
    for i in range(3):
        copy_to(media["cuts"], folder, f"clip{i}.mp4")
    code, out = run_in_process("--input-dir", folder, "--log-dir", tmp_path / "logs", "--device", "cuda",
                               "--batch-size", "1")
    assert code == 0, out
    assert [ln for ln in out if ln.startswith("SUMMARY:")] == ["SUMMARY: 3/3 succeeded, 0 failed, 0 skipped"]
    warnings = [ln for ln in out if ln.startswith("WARNING:")]
    assert len(warnings) == 1 and "redoing this video on the CPU" in warnings[0]
    assert "CUDA failed (CUDA error: injected fault (CUDA call 4))" in warnings[0]
    assert len(calls) > 4 and set(calls) == {1}  # the other clips ran on the GPU, one window a call
    devices = sorted(load_json(folder / f"clip{i}.scenes.json")["device"] for i in range(3))
    assert devices == ["cpu", "cuda:0", "cuda:0"]
    texts = {(folder / f"clip{i}.csv").read_text() for i in range(3)}
    assert len(texts) == 1  # the CPU redo found the same scenes


def test_a_cuda_failure_in_the_warm_up_leaves_the_model_on_the_cpu(weights_path, media, monkeypatch):
    fail_cuda_call(monkeypatch, 1)
    predictor, out = make_predictor(weights_path, 16)
    assert predictor.prepare() == "cuda"
    predictor.load()
    printed = out.getvalue().splitlines()
    devices = [ln for ln in printed if ln.startswith("DEVICE:")]
    assert devices[0].startswith("DEVICE: cuda:0 (CUDA requested and available, ")
    assert devices[1:] == ["DEVICE: cpu (fallback after a CUDA error in the warm-up)"]
    assert [ln for ln in printed if ln.startswith("WARNING:")] == [
        "WARNING: warm-up on cuda:0 failed (CUDA error: injected fault (CUDA call 1)): using the CPU"]
    # The 16 windows asked for were the GPU's; the CPU standing in keeps its own batch.
    assert predictor.device_type == "cpu" and predictor.batch_size == 1
    probs, backend = predictor.run(windows_of(media["cuts"])[:2])
    assert probs.shape == (2, 2, 50) and backend.device.type == "cpu"


def test_the_cpu_stand_in_of_a_gpu_run_keeps_its_own_batch_and_the_gpu_s_results(weights_path, media):
    windows = windows_of(media["cuts"])
    predictor, _ = make_predictor(weights_path, 16)
    predictor.load()
    assert predictor.device_type == "cuda" and predictor.gpu_healthy()
    on_gpu, backend = predictor.run(windows)
    assert backend.device.type == "cuda" and backend.batch == 16
    on_cpu, stand_in = predictor.run(windows, on_cpu=True)
    assert stand_in.device.type == "cpu" and stand_in.batch == 1
    assert predictor.device_type == "cuda" and predictor.batch_size == 16  # the GPU stays the primary
    assert np.abs(on_gpu - on_cpu).max() <= 2e-3


def test_out_of_memory_halves_the_batch_and_gives_the_same_output(weights_path, media):
    """A batch no card can hold (4096 windows x ~130 MB): the predictor halves
    the batch until it fits, and the output is the one a sane batch gives."""
    windows = windows_of(media["cuts"])
    big = windows[np.arange(4096) % len(windows)]
    predictor, log = make_predictor(weights_path, 4096)
    predictor.load()
    probs, backend = predictor.run(big)
    assert backend.device.type == "cuda"
    halvings = [ln for ln in log.getvalue().splitlines() if "CUDA out of memory: batch size halved" in ln]
    print(f"{len(halvings)} halvings, batch now {predictor.batch_size}")
    assert halvings and predictor.batch_size < 4096
    sane, _ = make_predictor(weights_path, 8)
    sane.load()
    small, _ = sane.run(windows)
    assert np.abs(probs[: len(windows)] - small).max() <= 1e-3
