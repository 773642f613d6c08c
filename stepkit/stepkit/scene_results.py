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
import math
import os
import re
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
    ``write_results`` adds. ``run`` holds device, precision, torchscript and
    implementation; probabilities are rounded to 6 decimals."""
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


# -- reading a result: is this document in the format? ---------------------------------
# docs/result-format.md describes every field below; a change of the fields (one
# added, removed, renamed or retyped) is a new FORMAT, so a reader never takes a
# document it does not know for one it does.
class ResultError(ValueError):
    """A result file that cannot be used; the message is one line naming the
    file and the cause, ``problems`` holds every problem found."""

    def __init__(self, message: str, problems: Sequence[str] = ()):
        super().__init__(message)
        self.problems = list(problems)


_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_TIMECODE = re.compile(r"^(\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3})$")
_RATE = re.compile(r"^\d+/[1-9]\d*$")
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2}|Z)$")


def _shown(value) -> str:
    """A value as a problem line quotes it: JSON, cut short so the line stays one."""
    if isinstance(value, str) and len(value) > 37:
        return json.dumps(value[:37], ensure_ascii=False)[:-1] + '..."'
    text = repr(value) if isinstance(value, float) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


# Each check gives the cause of a wrong value (the value quoted), or None.
def _integer(minimum: int):
    def check(v):
        return None if _is_int(v) and v >= minimum else f"must be an integer >= {minimum}, got {_shown(v)}"
    return check


def _number(minimum: float, nullable: bool = False):
    def check(v):
        if (v is None and nullable) or (_is_number(v) and v >= minimum):
            return None
        return f"must be a number >= {minimum:g}{' or null' if nullable else ''}, got {_shown(v)}"
    return check


def _text(pattern: Optional[re.Pattern] = None, what: str = "a non-empty string"):
    def check(v):
        if isinstance(v, str) and v and (pattern is None or pattern.match(v)):
            return None
        return f"must be {what}, got {_shown(v)}"
    return check


def _constant(expected):
    def check(v):
        return None if v == expected and type(v) is type(expected) else f"must be {_shown(expected)}, got {_shown(v)}"
    return check


def _threshold(v):
    # STEP3's configuration refuses 0 and 1: every frame, or none, would be a cut.
    if _is_number(v) and 0 < v < 1:
        return None
    return f"must be a number between 0 and 1 (exclusive), got {_shown(v)}"


def _boolean(v):
    return None if isinstance(v, bool) else f"must be true or false, got {_shown(v)}"


def _is_texts(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, str) and x for x in v)


def _texts(v):
    return None if _is_texts(v) else f"must be a non-empty list of non-empty strings, got {_shown(v)}"


def _text_or_texts(v):
    if (isinstance(v, str) and v) or _is_texts(v):
        return None
    return f"must be a non-empty string or a list of them, got {_shown(v)}"


def _probabilities(v):
    # One problem for the array, at its first wrong value: not one per frame.
    if not isinstance(v, list):
        return f"must be a list of numbers from 0 to 1, got {_shown(v)}"
    for i, x in enumerate(v):
        if not (_is_number(x) and 0 <= x <= 1):
            return f"must be a list of numbers from 0 to 1 (item {i} is {_shown(x)})"
    return None


_SCENE = {
    "no": _integer(1),
    "timecode_in": _text(_TIMECODE, "a timecode HH:MM:SS.mmm"),
    "timecode_out": _text(_TIMECODE, "a timecode HH:MM:SS.mmm"),
    "frame_in": _integer(1),
    "frame_out": _integer(1),
}

# Every field: a check, an object of fields, or a list of objects ([fields]).
_FIELDS = {
    "video": {
        "file": _text(),
        "identity": {"size": _integer(0), "mtime_ns": _integer(0)},
        "codec": _text(),
        "width": _integer(1),
        "height": _integer(1),
        "fps": _number(0),
        "frame_rate": _text(_RATE, 'a rate "N/D"'),
        "duration_s": _number(0, nullable=True),
        "frame_count": _integer(1),
        "decoded_span_s": _number(0),
        "decode_errors": _integer(0),
        "decoded_in_segments": _integer(1),
    },
    "threshold": _threshold,
    "scene_count": _integer(0),
    "scenes": [_SCENE],
    "model": {
        "name": _text(),
        "weights_file": _text(),
        "weights_sha256": _text(_HEX64, "64 lower-case hexadecimal digits"),
    },
    "device": _text_or_texts,
    "precision": _text_or_texts,
    "torchscript": _boolean,
    "implementation": _texts,
    "timings": {
        "started_at": _text(_ISO_TIME, "an ISO 8601 time with its UTC offset"),
        "wall_s": _number(0),
        "inference_s": _number(0),
        "model_load_s": _number(0),
    },
    "predictions": {"single_frame": _probabilities, "all_frames": _probabilities},
    "csv": {
        "file": _text(re.compile(r".*\.csv$"), "a file name ending in .csv"),
        "sha256": _text(_HEX64, "64 lower-case hexadecimal digits"),
    },
    "format": _constant(FORMAT),
    "complete": _constant(True),
}


def field_paths(spec: Optional[dict] = None, prefix: str = "") -> List[str]:
    """Every field's path, as docs/result-format.md names it (``scenes[].no``)."""
    paths = []
    for name, sub in (_FIELDS if spec is None else spec).items():
        path = prefix + name
        paths.append(path)
        if isinstance(sub, dict):
            paths += field_paths(sub, path + ".")
        elif isinstance(sub, list):
            paths += field_paths(sub[0], path + "[].")
    return paths


def _check_object(value, spec: dict, where: str, problems: List[str]) -> None:
    if not isinstance(value, dict):
        problems.append(f"{where or 'the document'}: must be an object, got {_shown(value)}")
        return
    prefix = where + "." if where else ""
    for name, sub in spec.items():
        path = prefix + name
        if name not in value:
            problems.append(f"{path}: missing")
        elif isinstance(sub, dict):
            _check_object(value[name], sub, path, problems)
        elif isinstance(sub, list):
            if not isinstance(value[name], list):
                problems.append(f"{path}: must be a list, got {_shown(value[name])}")
                continue
            for i, item in enumerate(value[name]):
                _check_object(item, sub[0], f"{path}[{i}]", problems)
        else:
            cause = sub(value[name])
            if cause:
                problems.append(f"{path}: {cause}")
    for name in value:
        if name not in spec:
            problems.append(f"{prefix}{name}: not a field of {FORMAT}")


def _seconds(timecode: str) -> float:
    h, m, s, ms = _TIMECODE.match(timecode).groups()
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def check_document(doc) -> List[str]:
    """What keeps ``doc`` (a parsed ``.scenes.json``) from following FORMAT, one
    line per problem naming the field and the cause; empty when it follows it.
    Checks each field's type and range, then what ties them together (the scene
    count, the scenes' order, one prediction per frame)."""
    if isinstance(doc, dict) and doc.get("format") != FORMAT and "format" in doc:
        # Another version's fields are not ours to judge one by one.
        return [f"format: {_shown(doc['format'])} is not {FORMAT}, the format this reader knows"]
    problems: List[str] = []
    _check_object(doc, _FIELDS, "", problems)
    if problems:
        return problems  # the relations below assume the fields are sound

    scenes, frames = doc["scenes"], doc["video"]["frame_count"]
    if doc["scene_count"] != len(scenes):
        problems.append(f"scene_count: {doc['scene_count']} but scenes holds {len(scenes)}")
    previous_out = 0
    for i, scene in enumerate(scenes):
        where = f"scenes[{i}]"
        if scene["no"] != i + 1:
            problems.append(f"{where}.no: {scene['no']} where {i + 1} is due (scenes are numbered from 1, in order)")
        if scene["frame_in"] > scene["frame_out"]:
            problems.append(f"{where}.frame_in: {scene['frame_in']} is after frame_out {scene['frame_out']}")
        elif scene["frame_in"] <= previous_out:
            problems.append(f"{where}.frame_in: {scene['frame_in']} is not after the previous scene's "
                            f"frame_out {previous_out}")
        if scene["frame_out"] > frames:
            problems.append(f"{where}.frame_out: {scene['frame_out']} is beyond the video's {frames} frames")
        if _seconds(scene["timecode_in"]) > _seconds(scene["timecode_out"]):
            problems.append(f"{where}.timecode_in: {scene['timecode_in']} is after timecode_out "
                            f"{scene['timecode_out']}")
        previous_out = scene["frame_out"]
    for name in ("single_frame", "all_frames"):
        values = doc["predictions"][name]
        if len(values) != frames:
            problems.append(f"predictions.{name}: {len(values)} values for the video's {frames} frames")
    return problems


def load_result(path: Path) -> dict:
    """The document of a ``.scenes.json`` that follows FORMAT; raises ResultError
    (one line: the file and the first problem) when it cannot be read or does
    not follow it. Whether it still describes its video is ``is_complete``'s
    question."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ResultError(f"{path}: not a result (not UTF-8 text)") from None
    except OSError as exc:
        raise ResultError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ResultError(f"{path}: not a result (not JSON: {exc})") from None
    problems = check_document(doc)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise ResultError(f"{path}: {problems[0]}{more}", problems)
    return doc
