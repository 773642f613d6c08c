"""Result files of one video, written atomically, and the test of "already done".

Per video two files sit next to it: ``<stem>.csv`` (the scenes) and
``<stem>.scenes.json`` (metadata and per-frame probabilities). When two videos
of one folder share a stem (``a.mp4``, ``a.mov``), each keeps its extension in
its result names (``a.mp4.csv``, ``a.mov.csv``) so neither overwrites the other.

Each file is written to a hidden temporary file in the same folder and renamed
over the final name. The JSON goes last and is the completion marker: it names
the video (size and modification time) and the CSV's checksum, so a CSV left
alone by a crash, a stale result of a changed video, or a result written with
another threshold never passes for done.
"""
import csv
import hashlib
import io
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

FORMAT = "step3-scenes/1"
TEMP_PREFIX = ".step3-tmp-"
_TEMP_RE = re.compile(r"^\.step3-tmp-(\d+)-")


@dataclass(frozen=True)
class ResultPaths:
    csv: Path
    json: Path


def result_paths(video: Path, siblings: Iterable[Path]) -> ResultPaths:
    """Names of ``video``'s results, given the videos of its folder (itself included)."""
    stem_clash = any(other != video and other.stem == video.stem for other in siblings)
    base = video.name if stem_clash else video.stem
    return ResultPaths(video.with_name(base + ".csv"), video.with_name(base + ".scenes.json"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def video_identity(video: Path) -> dict:
    st = video.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def is_complete(video: Path, paths: ResultPaths, threshold: float) -> bool:
    """True if both files exist, the JSON is ours and finished, and both match the video."""
    try:
        meta = json.loads(paths.json.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or meta.get("complete") is not True:
            return False
        if meta.get("video", {}).get("identity") != video_identity(video):
            return False
        if meta.get("threshold") != threshold:
            return False
        return meta.get("csv", {}).get("sha256") == sha256_file(paths.csv)
    except (OSError, ValueError, AttributeError):
        return False


def csv_text(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either the old file or the whole new one."""
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_results(paths: ResultPaths, csv_content: str, metadata: dict) -> None:
    data = csv_content.encode("utf-8")
    write_atomic(paths.csv, data)
    metadata = dict(metadata)
    metadata["csv"] = {"file": paths.csv.name, "sha256": hashlib.sha256(data).hexdigest()}
    metadata["format"] = FORMAT
    metadata["complete"] = True
    write_atomic(paths.json, (json.dumps(metadata, separators=(",", ":")) + "\n").encode("utf-8"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folders: Iterable[Path]) -> List[Path]:
    """Delete temporary files left by a run that was killed (its process is gone)."""
    removed = []
    for folder in folders:
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            m = _TEMP_RE.match(entry.name)
            if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
                try:
                    entry.unlink()
                    removed.append(entry)
                except OSError:
                    pass
    return removed


def find_videos(root: Path, extensions: Sequence[str]) -> List[Path]:
    """Videos under ``root`` (recursively, extensions case-insensitive), or ``root``
    itself if it is a file. Sorted for a stable order; hidden files are skipped."""
    exts = {e.lower() for e in extensions}
    if root.is_file():
        return [root]
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in exts:
                found.append(Path(dirpath) / name)
    return found


def folder_videos(folder: Path, extensions: Sequence[str]) -> List[Path]:
    exts = {e.lower() for e in extensions}
    try:
        return [p for p in folder.iterdir() if p.suffix.lower() in exts and not p.name.startswith(".")]
    except OSError:
        return []


def relative_name(path: Path, root: Path) -> str:
    base = root if root.is_dir() else root.parent
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


def load_metadata(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
