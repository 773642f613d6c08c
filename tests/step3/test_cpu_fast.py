"""cpu_fast.py against the eager model: same probabilities (within 1e-4) and the
same scenes on every window of the sample video's real frames."""
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "workflow_scripts" / "step3"))

from shots.model import weights as assets  # noqa: E402
from shots.model import network as tn  # noqa: E402
from shots.model.cpu_fast import build_cpu_model  # noqa: E402
from shots.scenes import predictions_to_scenes  # noqa: E402
from shots.windows import WindowBuilder, assemble, keep_center  # noqa: E402

MAX_PROBABILITY_DIFFERENCE = 1e-4


@pytest.fixture(scope="module")
def eager():
    return tn.load_model(str(assets.default_weights_path()))


@pytest.fixture(scope="module")
def fast(eager):
    return build_cpu_model(eager)


@pytest.fixture(scope="module")
def sample_windows():
    """All windows of the sample, from the frames of the official ffmpeg command."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(assets.sample_video_path()), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-s", "48x27", "-"], check=True, capture_output=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, 27, 48, 3)
    builder = WindowBuilder()
    windows = np.stack(builder.push(frames) + builder.finish())
    return frames.shape[0], windows


def probabilities(model, windows: np.ndarray) -> np.ndarray:
    """``[windows, 2, 100]`` sigmoid probabilities of both heads, one window per call."""
    out = []
    with torch.no_grad():
        for window in windows:
            single, many = model(torch.from_numpy(window[None]))
            assert single.shape == (1, 100, 1) and many.shape == (1, 100, 1)
            out.append(torch.sigmoid(torch.cat([single, many], 2))[0].t().numpy())
    return np.stack(out)


def probabilities_threaded(model, windows: np.ndarray, workers: int = 2) -> np.ndarray:
    """The same, with the windows shared by ``workers`` threads of one core each.

    Only for the slow reference: as fast as one window on all cores when the
    machine is idle, and it degrades gracefully when other jobs share the cores
    (one model call on 2 OpenMP threads stalls at every barrier then)."""
    def run(part: np.ndarray) -> np.ndarray:
        torch.set_num_threads(1)  # this thread's setting
        return probabilities(model, part)

    threads = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(run, np.array_split(windows, workers)))
    finally:
        torch.set_num_threads(threads)
    return np.concatenate(parts)


def test_same_probabilities_and_scenes_on_the_sample(eager, fast, sample_windows):
    frame_count, windows = sample_windows
    assert windows.shape == (107, 100, 27, 48, 3)
    want = probabilities_threaded(eager, windows)
    got = probabilities(fast, windows)  # as the engine calls it: one window per call

    for head in (0, 1):
        difference = float(np.abs(got[:, head] - want[:, head]).max())
        print(f"head {head}: max |dp| = {difference:.2e}")
        assert difference <= MAX_PROBABILITY_DIFFERENCE

    def single_head_frames(p):
        return assemble([keep_center(w) for w in p[:, 0]], frame_count)

    want_scenes = predictions_to_scenes(single_head_frames(want), 0.5)
    got_scenes = predictions_to_scenes(single_head_frames(got), 0.5)
    # The sample has real cuts, so this is not vacuous.
    assert len(want_scenes) > 50
    assert got_scenes == want_scenes


def test_batches_and_other_lengths_match_eager(eager, fast):
    generator = torch.Generator().manual_seed(0)
    for shape in [(2, 40, 27, 48, 3), (1, 37, 27, 48, 3)]:
        x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
        with torch.no_grad():
            want = eager(x)
            got = fast(x)
        for a, b in zip(got, want):
            assert a.shape == b.shape == (shape[0], shape[1], 1)
            assert float((torch.sigmoid(a) - torch.sigmoid(b)).abs().max()) <= MAX_PROBABILITY_DIFFERENCE


def test_bad_inputs_raise_the_eager_models_errors(fast):
    with pytest.raises(TypeError, match="Expected dtype torch.uint8, got torch.float32"):
        fast(torch.zeros(1, 100, 27, 48, 3))
    with pytest.raises(ValueError, match=r"Expected shape \[B, T, 27, 48, 3\]"):
        fast(torch.zeros(1, 100, 20, 48, 3, dtype=torch.uint8))


def test_weights_come_from_the_given_model(eager):
    """A change to the model's weights shows in the fast model built from it."""
    changed = tn.TransNetV2()
    changed.load_state_dict(eager.state_dict())
    changed.eval()
    with torch.no_grad():
        changed.SDDCNN[1].DDCNN[0].Conv3D_2.layers[0].weight.mul_(1.5)
    x = torch.randint(0, 256, (1, 30, 27, 48, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = changed(x)[0]
        got = build_cpu_model(changed)(x)[0]
        original = eager(x)[0]
    assert float((torch.sigmoid(got) - torch.sigmoid(want)).abs().max()) <= MAX_PROBABILITY_DIFFERENCE
    assert float((want - original).abs().max()) > 1e-3


def test_malloc_arenas_can_be_capped_here():
    from shots.malloc_arenas import limit_arenas
    assert limit_arenas() is True  # glibc: the cap run_transnet.py sets before any thread starts
