"""The GPU path's resize + colour conversion (frames/swscale_exact.py,
frames/yuv_to_rgb.py), run on the CPU against ffmpeg itself: clips made by
ffmpeg in each size, pixel format and colour tag are decoded to raw YUV by
ffmpeg, converted by our code, and compared with the frames of STEP3's own
ffmpeg command (ffmpeg_reader.ffmpeg_command). Measured: every byte
identical in every case (bench/RESULTS.md, "swscale-exact")."""
import itertools
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ffmpeg

from shots.frames.ffmpeg_reader import ffmpeg_command
from shots.frames.swscale_exact import PIXEL_FORMATS, NotExact, scale_plan
from shots.frames.yuv_to_rgb import YuvToRgb, split_semiplanar

SIZES = [(1920, 1080), (1280, 720), (854, 480), (641, 359), (160, 90)]
FORMATS = ["yuv420p", "yuv420p10le", "yuvj420p", "yuv444p"]
TAGS = {"bt601": ["-colorspace", "smpte170m", "-color_primaries", "smpte170m", "-color_trc", "smpte170m"],
        "bt709": ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"]}
# In RGB first: lavfi's sources round odd sizes down in 4:2:0. Noise reaches
# the extremes (clipping); mandelbrot is slow to draw, so it is small.
SOURCES = ["testsrc2=size={w}x{h}:rate=25,format=rgb24,noise=alls=80:allf=t",
           "mandelbrot=size=320x180:rate=25,format=rgb24,scale={w}:{h}:flags=neighbor",
           "testsrc2=size={w}x{h}:rate=25,format=rgb24"]
CASES = list(itertools.product(SIZES, FORMATS, TAGS))
FRAMES = 2


def run(cmd) -> bytes:
    return subprocess.run(cmd, check=True, capture_output=True).stdout


def make_clip(folder: Path, size, fmt: str, tag: str, source: str) -> Path:
    w, h = size
    path = folder / f"{w}x{h}_{fmt}_{tag}.mkv"
    # FFV1 keeps every pixel format and tag but stores yuvj420p as yuv420p:
    # full range is H.264's yuvj420p, or for odd sizes (which x264 refuses)
    # FFV1's yuv420p tagged full range, the other form such files take.
    codec = ["-c:v", "ffv1"]
    if fmt == "yuvj420p" and w % 2 == 0 and h % 2 == 0:
        codec = ["-c:v", "libx264", "-qp", "8", "-preset", "veryfast"]
    elif fmt == "yuvj420p":
        fmt, codec = "yuv420p", codec + ["-color_range", "pc"]
    ffmpeg("-f", "lavfi", "-i", source.format(w=w, h=h), "-frames:v", str(FRAMES),
           "-pix_fmt", fmt, *TAGS[tag], *codec, str(path))
    return path


def probe(path: Path) -> dict:
    out = run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-of", "json", "-show_entries",
               "stream=width,height,pix_fmt,color_range,color_space", str(path)])
    return json.loads(out)["streams"][0]


def raw_planes(path: Path, fmt: str, w: int, h: int):
    """The decoded planes, as ffmpeg's decoder gives them (no conversion)."""
    xs, ys, depth, _ = PIXEL_FORMATS[fmt]
    cw, ch = -((-w) >> xs), -((-h) >> ys)
    data = np.frombuffer(run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", fmt, "-"]),
                         np.uint8 if depth == 8 else np.uint16)
    frames = data.reshape(-1, w * h + 2 * cw * ch).astype(np.int32)
    n = frames.shape[0]
    return (frames[:, :w * h].reshape(n, h, w), frames[:, w * h:w * h + cw * ch].reshape(n, ch, cw),
            frames[:, w * h + cw * ch:].reshape(n, ch, cw))


def step3_frames(path: Path) -> np.ndarray:
    """What STEP3's CPU path reads: its own ffmpeg command line."""
    return np.frombuffer(run(ffmpeg_command(path)), np.uint8).reshape(-1, 27, 48, 3)


def plan_for(info: dict):
    return scale_plan(info["width"], info["height"], info["pix_fmt"], info.get("color_space"),
                      True if info.get("color_range") == "pc" else None)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("swscale")
    made = {}
    for i, (size, fmt, tag) in enumerate(CASES):
        made[(size, fmt, tag)] = make_clip(folder, size, fmt, tag, SOURCES[i % len(SOURCES)])
    return made


@pytest.mark.parametrize("size,fmt,tag", CASES, ids=[f"{s[0]}x{s[1]}-{f}-{t}" for s, f, t in CASES])
def test_identical_to_ffmpeg(clips, size, fmt, tag):
    path = clips[(size, fmt, tag)]
    info = probe(path)
    stored = "yuv420p" if fmt == "yuvj420p" and size[0] % 2 else fmt
    assert (info["width"], info["height"], info["pix_fmt"]) == (*size, stored)
    assert info.get("color_space") == ("bt709" if tag == "bt709" else "smpte170m")
    assert (info.get("color_range") == "pc") == (fmt == "yuvj420p")
    ours = YuvToRgb(plan_for(info))(*raw_planes(path, stored, *size)).numpy()
    theirs = step3_frames(path)
    assert ours.shape == theirs.shape == (FRAMES, 27, 48, 3)
    diff = np.abs(ours.astype(int) - theirs.astype(int))
    # Measured: identical bytes, every case.
    assert diff.max() == 0, f"{np.mean(diff == 0):.5f} identical, max difference {diff.max()}"


def test_the_comparison_can_fail(clips):
    """A BT.709 clip converted with BT.601's matrix, or read as full range,
    does not match: the cases above do test the colour handling."""
    path = clips[((854, 480), "yuv420p", "bt709")]
    info = probe(path)
    planes = raw_planes(path, "yuv420p", 854, 480)
    theirs = step3_frames(path)
    for wrong in (scale_plan(854, 480, "yuv420p", "smpte170m"), scale_plan(854, 480, "yuv420p", "bt709", True)):
        ours = YuvToRgb(wrong)(*planes).numpy()
        assert np.mean(ours == theirs) < 0.9
    assert info["color_space"] == "bt709"


@pytest.mark.parametrize("fmt,shift", [("yuv420p", 0), ("yuv420p10le", 6)])
def test_nvdec_surface_layout(clips, fmt, shift):
    """NVDEC hands over NV12 surfaces (P016 for 10 bits, the samples in the
    top bits): luma rows, then rows of interleaved U/V. Split again, they
    convert to the same frames. An odd width pads the luma rows."""
    w, h = 641, 359
    path = clips[((w, h), fmt, "bt709")]
    y, u, v = raw_planes(path, fmt, w, h)
    n, ch, cw = u.shape
    chroma = np.stack([u, v], axis=-1).reshape(n, ch, cw * 2)
    luma = np.pad(y, ((0, 0), (0, 0), (0, cw * 2 - w)))
    surfaces = torch.from_numpy(np.concatenate([luma, chroma], axis=1) << shift)
    y2, u2, v2 = split_semiplanar(surfaces, h, shift)
    ours = YuvToRgb(plan_for(probe(path)))(y2[:, :, :w], u2, v2).numpy()
    assert np.array_equal(ours, step3_frames(path))


def test_what_ffmpeg_does_otherwise_is_refused():
    with pytest.raises(NotExact, match="two steps"):
        scale_plan(3840, 2160, "yuv420p")  # libswscale cascades through a middle size
    with pytest.raises(NotExact, match="pixel format"):
        scale_plan(1920, 1080, "yuv422p12le")
    with pytest.raises(NotExact, match="YCgCo"):
        scale_plan(1920, 1080, "yuv420p", "ycgco")
