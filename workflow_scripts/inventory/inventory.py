"""Inventory: checks every video of the projects folder with ffprobe and writes a report.

A light first step for "Run all": it finds the files STEP3 will read (stepkit's
discovery, in STEP3's order), says which ones have no video STEP3 can read
before the long step starts (stepkit's stream choice: cover art is no video),
and writes <input-dir>/inventory.json (size, duration, resolution, frame rate,
codec). It prints the progress lines of docs/progress-protocol.md.

Exit codes: 0 every video readable (or none found), 1 at least one unreadable,
2 usage error (no such folder, folder unreadable, no ffprobe, report not writable).
"""
import argparse
import json
import shutil
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

from stepkit.atomic import remove_stale_temporaries, write_atomic
from stepkit.probe import ffprobe_command, last_error_line, select_video_stream
from stepkit.progress_lines import ProgressEmitter
from stepkit.videos import FolderError, find_videos, relative_name

REPORT_NAME = "inventory.json"
TEMP_PREFIX = ".inventory-tmp-"


def probe(ffprobe: str, path: Path) -> dict:
    """ffprobe's view of ``path``; raises ValueError with ffprobe's own words."""
    out = subprocess.run(ffprobe_command(path, ffprobe), capture_output=True, text=True,
                         errors="replace", timeout=120)
    if out.returncode != 0:
        raise ValueError(last_error_line(out.stderr, path) or f"ffprobe exit code {out.returncode}")
    try:
        data = json.loads(out.stdout or "{}")
    except ValueError:
        raise ValueError("ffprobe gave no usable answer") from None
    video = select_video_stream(data)
    if video is None:
        raise ValueError("no video stream")
    fps = None
    rate = video.get("avg_frame_rate") or video.get("r_frame_rate")
    if rate and rate != "0/0":
        fps = float(Fraction(rate))
    duration = data.get("format", {}).get("duration") or video.get("duration")
    return {
        "codec": video.get("codec_name"),
        "width": video.get("width"),
        "height": video.get("height"),
        "fps": round(fps, 3) if fps else None,
        "duration_s": round(float(duration), 3) if duration else None,
        "frames": int(video["nb_frames"]) if str(video.get("nb_frames", "")).isdigit() else None,
    }


def cause_of(exc: Exception) -> str:
    """One line for the FAILED line and the report (the name is said already)."""
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"ffprobe did not answer within {exc.timeout:.0f} s"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot read it: {exc.strerror}"
    return str(exc)


def describe(info: dict) -> str:
    parts = [f"{info['width']}x{info['height']} {info['codec']}"]
    if info["fps"]:
        parts.append(f"{info['fps']:.2f} fps")
    if info["duration_s"] is not None:
        parts.append(f"{info['duration_s']:.1f} s")
    return ", ".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-dir", default="projects", help="folder searched recursively (or one video)")
    parser.add_argument("--output", help=f"report file (default <input-dir>/{REPORT_NAME})")
    args = parser.parse_args(argv)
    out = ProgressEmitter()

    root = Path(args.input_dir)
    if not root.exists():
        out.error(f"{root} does not exist")
        return 2
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        out.error("ffprobe not found (install ffmpeg: make setup)")
        return 2
    base = root if root.is_dir() else root.parent
    output = Path(args.output) if args.output else base / REPORT_NAME

    def unreadable(folder: Path, cause: str) -> None:
        out.warning(f"{relative_name(folder, root)}: folder skipped, cannot read it: {cause}")

    try:
        videos = find_videos(root, on_unreadable=unreadable)
    except FolderError as exc:
        out.error(str(exc))
        return 2
    total = len(videos)
    out.total(total)
    entries, ok, failed = [], 0, 0
    for i, path in enumerate(videos, 1):
        name = relative_name(path, root)
        out.processing(i, total, name)
        entry = {"path": name}
        try:
            entry["size"] = path.stat().st_size
            entry.update(probe(ffprobe, path))
            entry["readable"] = True
            ok += 1
            out.success(i, total, name, describe(entry))
        except (ValueError, OSError, subprocess.TimeoutExpired) as exc:
            entry.update(readable=False, error=cause_of(exc))
            failed += 1
            out.failed(i, total, name, entry["error"])
        entries.append(entry)
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "input_dir": str(root),
        "videos": entries,
        "readable": ok,
        "unreadable": failed,
        "total_duration_s": round(sum(e.get("duration_s") or 0 for e in entries), 3),
    }
    # A report killed half-written would be taken for the whole list: it is
    # written atomically, and the temporaries of a killed run are cleared first.
    remove_stale_temporaries([output.parent], TEMP_PREFIX)
    data = (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    try:
        write_atomic(output, data, TEMP_PREFIX)
    except OSError as exc:
        out.error(f"cannot write the report {output}: {exc.strerror or exc}")
        return 2
    out.line(f"REPORT: {output}")
    out.summary(ok, total, failed, 0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
