"""STEP3's result files: their names, their format, how they are written and
when they count as done. The one owner of the format described in
docs/result-format.md (STEP3 writes it, the dashboard reads it).

Per video two files sit next to it: ``<stem>.csv`` (the scenes) and
``<stem>.scenes.json`` (metadata and per-frame probabilities). When two videos
of one folder share a stem (``a.mp4``, ``a.mov``), each keeps its extension in
its result names (``a.mp4.csv``, ``a.mov.csv``) so neither overwrites the other.

Each file is written atomically, the JSON last: it is the completion marker.
It names the video (size and modification time) and the CSV's checksum, so a
CSV left alone by a crash, a stale result of a changed video, or a result
written with another threshold never passes for done.
"""
import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

from .atomic import remove_stale_temporaries as _remove_temporaries
from .atomic import write_atomic

FORMAT = "step3-scenes/1"
# The system we replace wrote this CSV, and an After Effects script reads it
# (splitting on commas, preferring the frame columns): it stays as it is.
CSV_HEADER = ["No", "Timecode In", "Timecode Out", "Frame In", "Frame Out"]
TEMP_PREFIX = ".step3-tmp-"
CSV_SUFFIX, JSON_SUFFIX = ".csv", ".scenes.json"


@dataclass(frozen=True)
class ResultPaths:
    csv: Path
    json: Path


def result_paths(video: Path, siblings: Iterable[Path]) -> ResultPaths:
    """Names of ``video``'s results, given the videos of its folder (itself included)."""
    base = result_bases(set(siblings) | {video})[video]
    return ResultPaths(video.with_name(base + CSV_SUFFIX), video.with_name(base + JSON_SUFFIX))


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


# -- the CSV -------------------------------------------------------------------------
def format_timecode(seconds: float) -> str:
    """HH:MM:SS.mmm, rounded to the millisecond."""
    total_ms = int(round(max(0.0, seconds) * 1000))
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{ms:03d}"


def scene_rows(scenes: Sequence[Sequence[int]], timestamps: Sequence[float], fps: float) -> List[list]:
    """CSV rows of 0-based inclusive ``(start, end)`` scenes: frames 1-based
    inclusive; Timecode In is the first frame's timestamp, Timecode Out the end
    of the last frame (the next frame's timestamp, or one frame duration after
    the last frame of the video)."""
    n = len(timestamps)
    frame_duration = 1.0 / fps if fps > 0 else 0.0
    rows = []
    for number, (start, end) in enumerate(scenes, 1):
        t_in = timestamps[start]
        t_out = timestamps[end + 1] if end + 1 < n else timestamps[end] + frame_duration
        rows.append([number, format_timecode(t_in), format_timecode(t_out), start + 1, end + 1])
    return rows


def csv_text(rows: Sequence[Sequence], header: Sequence[str] = CSV_HEADER) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


# -- the JSON ------------------------------------------------------------------------
def make_document(*, video: dict, threshold: float, rows: Sequence[Sequence], model: dict, run: dict,
                  timings: dict, single_frame: Sequence[float], all_frames: Sequence[float]) -> dict:
    """The JSON of one video's result, without the completion fields that
    ``write_results`` adds. ``run`` holds device, precision, torchscript,
    implementation and frame_source (optional, "ffmpeg" when not given);
    probabilities are rounded to 6 decimals."""
    return {
        "video": dict(video),
        "threshold": threshold,
        "scene_count": len(rows),
        "scenes": [{"no": r[0], "timecode_in": r[1], "timecode_out": r[2], "frame_in": r[3], "frame_out": r[4]}
                   for r in rows],
        "model": dict(model),
        "device": run["device"],
        "precision": run["precision"],
        "torchscript": run["torchscript"],
        "implementation": run["implementation"],
        "frame_source": run.get("frame_source", "ffmpeg"),
        "timings": dict(timings),
        "predictions": {
            "single_frame": [round(float(v), 6) for v in single_frame],
            "all_frames": [round(float(v), 6) for v in all_frames],
        },
    }


def write_results(paths: ResultPaths, rows: Sequence[Sequence], document: dict) -> None:
    """The CSV, then the JSON that marks it complete; no CSV is left without its JSON."""
    data = csv_text(rows).encode("utf-8")
    document = dict(document)
    document["csv"] = {"file": paths.csv.name, "sha256": hashlib.sha256(data).hexdigest()}
    document["format"] = FORMAT
    document["complete"] = True
    marker = (json.dumps(document, separators=(",", ":")) + "\n").encode("utf-8")
    write_atomic(paths.csv, data, TEMP_PREFIX)
    try:
        write_atomic(paths.json, marker, TEMP_PREFIX)
    except BaseException:
        # The video failed, and a lone CSV would be taken for its scenes.
        try:
            paths.csv.unlink()
        except OSError:
            pass
        raise


def read_document(path: Path) -> Optional[dict]:
    """The parsed JSON, or None if it cannot be read or is not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def video_identity(video: Path) -> dict:
    st = Path(video).stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def is_complete(video: Path, paths: ResultPaths, threshold: float) -> bool:
    """Both files exist, the JSON is ours and finished, and both match the video."""
    meta = read_document(paths.json)
    try:
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("complete") is not True:
            return False
        if meta.get("video", {}).get("identity") != video_identity(video):
            return False
        if meta.get("threshold") != threshold:
            return False
        return meta.get("csv", {}).get("sha256") == sha256_file(paths.csv)
    except (OSError, AttributeError):
        return False


def remove_stale_results(video: Path, paths: ResultPaths) -> List[Path]:
    """After ``video`` failed: delete results of ours that describe another
    version of it (it was replaced or changed), so nothing stale looks done.
    Results that still match the video are kept (a failed --force redo loses
    nothing), and a CSV that isn't the one the JSON wrote is left alone."""
    meta = read_document(paths.json)
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


def remove_stale_temporaries(folders: Iterable[Path]) -> List[Path]:
    """Temporaries of result files left by a run that was killed."""
    return _remove_temporaries(folders, TEMP_PREFIX)


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
