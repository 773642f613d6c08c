"""The videos of the projects folder, as the steps will find them (stepkit's
discovery: the same files, linked folders followed), listed by path."""
import os
from pathlib import Path

from stepkit.videos import FolderError, relative_name, walk_videos


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
