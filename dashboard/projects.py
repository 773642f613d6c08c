"""The projects folder: whether the steps can work on it, and its videos as
the steps will find them (stepkit's discovery: the same files, linked folders
followed), listed by path."""
import os
import shlex
from pathlib import Path

from stepkit.videos import FolderError, relative_name, walk_videos


def folder_problem(projects_dir: Path) -> tuple[str, str | None] | None:
    """Why the steps cannot work on the folder (missing, not a folder,
    unreadable) and the command that fixes it if there is one; None when it is fine.

    Looked at each time it is asked: a folder created while the server runs counts at once.
    """
    path = str(projects_dir)
    try:
        with os.scandir(path):
            return None
    except FileNotFoundError:
        return f"the projects folder {path} does not exist", f"mkdir -p {shlex.quote(path)}"
    except NotADirectoryError:
        return f"the projects folder {path} is not a folder", None
    except OSError as exc:
        return f"the projects folder {path} cannot be read ({exc.strerror or exc})", None


def list_videos(projects_dir: Path, limit: int = 500) -> dict:
    """The first ``limit`` videos under ``projects_dir`` with their size and
    modification time, and how many there are in all."""
    root = Path(projects_dir)
    if not root.is_dir():
        return {"videos": [], "count": 0, "truncated": False, "missing": True}
    videos = []
    count = 0
    try:
        for path in walk_videos(root):
            count += 1  # every file the steps will take, a dangling link too (they will fail on it)
            if len(videos) >= limit:
                continue  # counted, not listed: a big folder costs no stat per file
            try:
                st = os.stat(path)
            except OSError:
                continue
            videos.append({"path": relative_name(path, root), "size": st.st_size, "mtime": st.st_mtime})
    except FolderError:
        pass  # the folder exists but cannot be read: nothing to list (the steps say why when run)
    videos.sort(key=lambda v: v["path"])
    return {"videos": videos, "count": count, "truncated": count > len(videos), "missing": False}
