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
from typing import Callable, Iterable, List, Optional, Sequence

FORMAT = "step3-scenes/1"
TEMP_PREFIX = ".step3-tmp-"
_TEMP_RE = re.compile(r"^\.step3-tmp-(\d+)-")


@dataclass(frozen=True)
class ResultPaths:
    csv: Path
    json: Path


def result_paths(video: Path, siblings: Iterable[Path]) -> ResultPaths:
    """Names of ``video``'s results, given the videos of its folder (itself included)."""
    base = result_bases(set(siblings) | {video})[video]
    return ResultPaths(video.with_name(base + ".csv"), video.with_name(base + ".scenes.json"))


def result_bases(videos: Iterable[Path]) -> dict:
    """Each video's result name without its suffix: the stem, or the whole file
    name where a stem would be shared. Whole names are unique in a folder, but
    one (``a.mp4``) can equal another video's stem (``a.mp4.mkv``): that one
    takes its whole name too, until no two videos share a name."""
    bases = {v: v.stem for v in videos}
    while True:
        users: dict = {}
        for video, base in bases.items():
            users.setdefault(base, []).append(video)
        clashing = [v for group in users.values() if len(group) > 1 for v in group if bases[v] != v.name]
        if not clashing:
            return bases
        for video in clashing:
            bases[video] = video.name


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
    metadata = dict(metadata)
    metadata["csv"] = {"file": paths.csv.name, "sha256": hashlib.sha256(data).hexdigest()}
    metadata["format"] = FORMAT
    metadata["complete"] = True
    marker = (json.dumps(metadata, separators=(",", ":")) + "\n").encode("utf-8")
    write_atomic(paths.csv, data)
    try:
        write_atomic(paths.json, marker)
    except BaseException:
        # No CSV without its JSON: the video failed, and a lone CSV would be
        # taken for its scenes.
        try:
            paths.csv.unlink()
        except OSError:
            pass
        raise


def name_problem(paths: ResultPaths) -> Optional[str]:
    """Why the result files cannot be created under their names, or None."""
    for path in (paths.csv, paths.json):
        size = len(os.fsencode(path.name))
        try:
            limit = os.pathconf(path.parent, "PC_NAME_MAX")
        except (OSError, ValueError):
            limit = 255
        if size > limit:
            return (f"the result file name would be too long ({size} bytes, the file system allows "
                    f"{limit}): shorten the video's name")
    return None


def describe_write_error(exc: OSError) -> str:
    """"cannot write results: <cause> (<file>)", naming the result, not a temporary."""
    target = exc.filename2 or exc.filename
    where = ""
    if target:
        target = Path(os.fsdecode(target))
        where = f" (in {target.parent})" if target.name.startswith(TEMP_PREFIX) else f" ({target.name})"
    return f"cannot write results: {exc.strerror or exc}{where}"


def remove_stale_results(video: Path, paths: ResultPaths) -> List[Path]:
    """After ``video`` failed: delete results of ours that describe another
    version of it (it was replaced or changed), so nothing stale looks done.
    Results that still match the video are kept (a failed --force redo loses
    nothing), and a CSV that isn't the one the JSON wrote is left alone."""
    meta = load_metadata(paths.json)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return []
    try:
        if meta.get("video", {}).get("identity") == video_identity(video):
            return []
    except AttributeError:
        return []  # not a shape we wrote: leave it alone
    except OSError:
        pass  # the video is gone or unreadable: its old results describe nothing here
    removed = []
    try:
        if paths.csv.exists() and meta.get("csv", {}).get("sha256") == sha256_file(paths.csv):
            paths.csv.unlink()
            removed.append(paths.csv)
        paths.json.unlink()
        removed.append(paths.json)
    except OSError:
        pass
    return removed


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


class FolderError(Exception):
    """The input folder itself cannot be read."""


def find_videos(root: Path, extensions: Sequence[str],
                on_unreadable: Optional[Callable[[Path, str], None]] = None) -> List[Path]:
    """Videos under ``root`` (recursively, extensions case-insensitive), or ``root``
    itself if it is a file. Sorted for a stable order; hidden files are skipped;
    linked folders are followed.
    A sub-folder that cannot be read is reported to ``on_unreadable(folder, cause)``
    and skipped; an unreadable ``root`` raises FolderError."""
    exts = {e.lower() for e in extensions}
    if root.is_file():
        return [root]
    found = []

    def unreadable(error: OSError) -> None:
        if Path(error.filename) == root:
            raise FolderError(f"cannot read the input folder {root}: {error.strerror}")
        if on_unreadable is not None:
            on_unreadable(Path(error.filename), error.strerror or str(error))

    # Linked folders are followed (a projects folder often gathers links to
    # where the videos are), each real folder once: no loops, no video twice.
    seen = set()
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
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
