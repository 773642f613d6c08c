"""Official windowing and scene conversion, edge cases included."""
import numpy as np
import pytest
import torch

from shots import scenes
from shots import windows
from shots.windows import WindowBuilder
from stepkit.scene_results import format_timecode, scene_rows


def official_windows(frames: np.ndarray) -> list:
    """The official padding and sliding, written out as the published code does it."""
    n = len(frames)
    end = 25 + 50 - (n % 50 if n % 50 != 0 else 50)
    padded = np.concatenate([frames[:1]] * 25 + [frames] + [frames[-1:]] * end)
    out, ptr = [], 0
    while ptr + 100 <= len(padded):
        out.append(padded[ptr:ptr + 100])
        ptr += 50
    return out


def streamed(frames: np.ndarray, chunk: int) -> list:
    builder = WindowBuilder()
    out = []
    for i in range(0, len(frames), chunk):
        out += builder.push(frames[i:i + chunk])
    return out + builder.finish()


@pytest.mark.parametrize("n", [1, 2, 25, 49, 50, 51, 99, 100, 101, 150, 199, 200, 201, 333])
@pytest.mark.parametrize("chunk", [1, 7, 128])
def test_streamed_windows_equal_official(n, chunk):
    frames = np.random.default_rng(n).integers(0, 256, (n, 27, 48, 3), dtype=np.uint8)
    got = streamed(frames, chunk)
    want = official_windows(frames)
    assert len(got) == len(want) == windows.window_count(n)
    for a, b in zip(got, want):
        assert a.shape == (100, 27, 48, 3)
        assert np.array_equal(a, b)


@pytest.mark.parametrize("n", [1, 49, 150, 333])
def test_frames_as_tensors_or_mixed_give_the_same_windows(n):
    """Frames a GPU decoder keeps as tensors (here on the CPU), alone or
    after and before host frames (a video whose segments came from both
    kinds of decoder): the same windows, batched as one tensor."""
    frames = np.random.default_rng(n).integers(0, 256, (n, 27, 48, 3), dtype=np.uint8)
    want = official_windows(frames)
    for kinds in ("t", "nt", "tn"):
        builder, got, tensors = WindowBuilder(), [], 0
        for i in range(0, n, 40):
            piece = frames[i:i + 40]
            tensor = kinds[(i // 40) % len(kinds)] == "t"
            tensors += tensor
            got += builder.push(torch.from_numpy(piece.copy()) if tensor else piece)
        got += builder.finish()
        assert len(got) == len(want), kinds
        batch = windows.stack(got)
        assert isinstance(batch, torch.Tensor) == bool(tensors), kinds
        assert np.array_equal(np.asarray(batch), np.stack(want)), kinds
    assert isinstance(windows.stack(want), np.ndarray)


def test_no_frames_no_windows():
    assert WindowBuilder().finish() == []


@pytest.mark.parametrize("n", [1, 37, 100, 150])
def test_short_videos_match_package_predict_frames(n, model, package_model):
    """Streamed windows through our model give the package's own per-frame output."""
    frames = np.random.default_rng(7).integers(0, 256, (n, 27, 48, 3), dtype=np.uint8)
    with torch.no_grad():
        ref_single, ref_many = package_model.predict_frames(torch.from_numpy(frames.copy()), quiet=True)
        kept = []
        for w in streamed(frames, 64):
            single, many = model(torch.from_numpy(w[None].copy()))
            kept.append(np.stack([windows.keep_center(torch.sigmoid(single)[0, :, 0].numpy()),
                                  windows.keep_center(torch.sigmoid(many)[0, :, 0].numpy())]))
    single = windows.assemble([k[0] for k in kept], n)
    many = windows.assemble([k[1] for k in kept], n)
    assert single.shape == (n,) and many.shape == (n,)
    assert np.abs(single - ref_single.numpy()).max() <= 1e-4
    assert np.abs(many - ref_many.numpy()).max() <= 1e-4


def test_scenes_match_official_on_random_predictions(reference_module):
    rng = np.random.default_rng(3)
    official = reference_module.TransNetV2.predictions_to_scenes
    for _ in range(2000):
        n = int(rng.integers(1, 200))
        p = rng.random(n) * (rng.random(n) < rng.random())
        assert np.array_equal(np.array(scenes.predictions_to_scenes(p, 0.5)).reshape(-1, 2),
                              official(p, 0.5))


@pytest.mark.parametrize("above, expected", [
    ([0, 0, 0, 0], [(0, 3)]),                      # no transition: one scene
    ([1, 1, 1], [(0, 2)]),                         # all transition: one scene (official fix-up)
    ([0], [(0, 0)]),                               # one frame
    ([0, 0, 1, 1, 1, 0, 0], [(0, 2), (5, 6)]),     # a 3-frame run is ONE transition
    ([1, 1, 0, 0, 0], [(2, 4)]),                   # transition at the start
    ([0, 0, 0, 1, 1], [(0, 3)]),                   # transition at the end
    ([0, 1, 0, 1, 0], [(0, 1), (2, 3), (4, 4)]),
])
def test_scene_edge_cases(above, expected):
    assert scenes.predictions_to_scenes(np.array(above, dtype=float) * 0.9, 0.5) == expected


def test_threshold_is_strictly_greater():
    assert scenes.predictions_to_scenes(np.array([0.0, 0.5, 0.0]), 0.5) == [(0, 2)]


@pytest.mark.parametrize("seconds, text", [
    (0, "00:00:00.000"), (0.04, "00:00:00.040"), (59.9996, "00:01:00.000"),
    (3600 + 62.5, "01:01:02.500"), (1 / 30 * 1001, "00:00:33.367"),
])
def test_timecodes(seconds, text):
    assert format_timecode(seconds) == text


def test_scene_rows_use_timestamps_and_one_based_frames():
    ts = [i / 29.97 for i in range(10)]
    rows = scene_rows([(0, 4), (6, 9)], ts, 29.97)
    assert rows == [
        [1, "00:00:00.000", "00:00:00.167", 1, 5],   # out = start of frame 6 (index 5)
        [2, "00:00:00.200", "00:00:00.334", 7, 10],  # last scene ends one frame after its last frame
    ]
