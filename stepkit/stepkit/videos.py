"""Which files are videos, and how a projects folder is searched for them.

Every step and the dashboard find the same videos: recursively, extensions
case-insensitive, hidden files and folders skipped, linked folders followed
(a projects folder often gathers links to where the videos are) but each real
folder once, so a loop of links gives no video twice. The order is STEP3's
item order: folder by folder from the top, a folder's videos by name before
its sub-folders, which are taken by name (so ``c.mp4`` comes before
``a/b.mp4``).
"""
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Sequence

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


class FolderError(Exception):
    """The folder to search cannot be read at all. The message says which and why."""


def normalise_extensions(extensions: Iterable[str]) -> frozenset:
    return frozenset(("." + e.strip().lstrip(".")).lower() for e in extensions)


def is_video_name(name: str, extensions: Iterable[str] = VIDEO_EXTENSIONS) -> bool:
    exts = extensions if isinstance(extensions, frozenset) else normalise_extensions(extensions)
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in exts


def walk_videos(root: Path, extensions: Sequence[str] = VIDEO_EXTENSIONS,
                on_unreadable: Optional[Callable[[Path, str], None]] = None) -> Iterator[Path]:
    """The videos under ``root`` in the order above, or ``root`` itself if it is a file.

    A sub-folder that cannot be read goes to ``on_unreadable(folder, cause)``
    and is skipped; an unreadable ``root`` raises FolderError."""
    root = Path(root)
    if root.is_file():
        yield root
        return
    exts = normalise_extensions(extensions)

    def unreadable(error: OSError) -> None:
        if Path(error.filename) == root:
            raise FolderError(f"cannot read the input folder {root}: {error.strerror}")
        if on_unreadable is not None:
            on_unreadable(Path(error.filename), error.strerror or str(error))

    seen = set()
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if is_video_name(name, exts):
                yield Path(dirpath) / name


def find_videos(root: Path, extensions: Sequence[str] = VIDEO_EXTENSIONS,
                on_unreadable: Optional[Callable[[Path, str], None]] = None) -> List[Path]:
    """``walk_videos`` as a list."""
    return list(walk_videos(root, extensions, on_unreadable))


def folder_videos(folder: Path, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> List[Path]:
    """The videos directly in ``folder`` (not below it); none if it cannot be read."""
    exts = normalise_extensions(extensions)
    try:
        return [p for p in Path(folder).iterdir() if is_video_name(p.name, exts)]
    except OSError:
        return []


def relative_name(path: Path, root: Path) -> str:
    """``path`` as the steps print it: relative to the searched folder (to its
    parent when one file was given), with ``/`` separators."""
    root = Path(root)
    base = root if root.is_dir() else root.parent
    try:
        return Path(path).relative_to(base).as_posix()
    except ValueError:
        return Path(path).as_posix()
