"""GPU paths, opt-in: ``pytest tests/step3 -m gpu --run-gpu`` on a machine with
an NVIDIA GPU (the lent device; CI has none). Each test runs the real script."""
import numpy as np
import pytest

from conftest import copy_to, ffmpeg, lines, load_json, run_step3

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


def test_injected_cuda_failure_redoes_the_video_on_cpu(tmp_path, media):
    folder = tmp_path / "p"
    for i in range(3):
        copy_to(media["cuts"], folder, f"clip{i}.mp4")
    proc = run_step3("--input-dir", folder, "--log-dir", tmp_path / "logs", "--device", "cuda",
                     "--batch-size", "1", env_extra={"STEP3_INJECT_CUDA_ERROR": "4"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lines(proc, "SUMMARY:") == ["SUMMARY: 3/3 succeeded, 0 failed, 0 skipped"]
    warnings = [ln for ln in lines(proc, "WARNING:") if "redoing this video on the CPU" in ln]
    assert len(warnings) == 1 and "injected fault" in warnings[0]
    devices = sorted(load_json(folder / f"clip{i}.scenes.json")["device"] for i in range(3))
    assert devices == ["cpu", "cuda:0", "cuda:0"]
    texts = {(folder / f"clip{i}.csv").read_text() for i in range(3)}
    assert len(texts) == 1  # the CPU redo found the same scenes


def test_out_of_memory_halves_the_batch_and_gives_the_same_output(weights_path, media):
    """A batch no card can hold (4096 windows x ~130 MB): the predictor halves
    the batch until it fits, and the output is the one a sane batch gives."""
    import io
    from conftest import reference_frames
    from shots.model.predictor import Predictor
    from shots.report import Reporter
    from shots.windows import WindowBuilder

    frames = reference_frames(media["cuts"])
    builder = WindowBuilder()
    windows = np.stack(builder.push(frames) + builder.finish())
    big = windows[np.arange(4096) % len(windows)]
    log = io.StringIO()
    predictor = Predictor(weights_path, "cuda", False, False, True, 4096, "auto", Reporter(stream=log))
    predictor.load()
    probs, backend = predictor.run(big)
    assert backend.device.type == "cuda"
    halvings = [ln for ln in log.getvalue().splitlines() if "CUDA out of memory: batch size halved" in ln]
    print(f"{len(halvings)} halvings, batch now {predictor.batch_size}")
    assert halvings and predictor.batch_size < 4096
    predictor.primary.batch = 8
    small, _ = predictor.run(windows)
    assert np.abs(probs[: len(windows)] - small).max() <= 1e-3
