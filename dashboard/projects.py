"""The videos of the projects folder, as the steps will find them."""
import os
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


def list_videos(projects_dir: Path, limit: int = 500) -> dict:
    """Videos under ``projects_dir`` (recursive, extensions case-insensitive), sorted by path."""
    root = Path(projects_dir)
    if not root.is_dir():
        return {"videos": [], "count": 0, "truncated": False, "missing": True}
    videos = []
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.lower().endswith(VIDEO_EXTENSIONS) or name.startswith("."):
                continue
            count += 1
            if len(videos) >= limit:
                continue
            full = os.path.join(dirpath, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            videos.append({"path": os.path.relpath(full, root).replace(os.sep, "/"), "size": st.st_size, "mtime": st.st_mtime})
    videos.sort(key=lambda v: v["path"])
    return {"videos": videos, "count": count, "truncated": count > len(videos), "missing": False}
