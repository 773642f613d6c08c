"""Inventory: checks every video of the projects folder with ffprobe and writes a report.

A light first step for "Run all": it finds the files STEP3 will read, says
which ones ffprobe cannot read before the long step starts, and writes
<input-dir>/inventory.json (size, duration, resolution, frame rate, codec).
It prints the progress lines of docs/progress-protocol.md.

Exit codes: 0 every video readable (or none found), 1 at least one unreadable,
2 usage error (no such folder, no ffprobe).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
REPORT_NAME = "inventory.json"


def find_videos(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / n for n in sorted(filenames)
                  if n.lower().endswith(VIDEO_EXTENSIONS) and not n.startswith(".")]
    return sorted(found)


def probe(ffprobe: str, path: Path) -> dict:
    """ffprobe's view of ``path``; raises ValueError with ffprobe's own words."""
    out = subprocess.run(
        [ffprobe, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", "--", str(path)],
        capture_output=True, text=True, errors="replace", timeout=120,
    )
    if out.returncode != 0:
        message = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"ffprobe exit code {out.returncode}"
        raise ValueError(message.replace(str(path) + ": ", ""))
    data = json.loads(out.stdout or "{}")
    video = next((s for s in data.get("streams", []) if s.get("codec_type") == "video"), None)
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


def describe(info: dict) -> str:
    parts = [f"{info['width']}x{info['height']} {info['codec']}"]
    if info["fps"]:
        parts.append(f"{info['fps']:.2f} fps")
    if info["duration_s"] is not None:
        parts.append(f"{info['duration_s']:.1f} s")
    return ", ".join(parts)


def write_atomically(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".inventory.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-dir", default="projects", help="folder searched recursively (or one video)")
    parser.add_argument("--output", help=f"report file (default <input-dir>/{REPORT_NAME})")
    args = parser.parse_args(argv)

    root = Path(args.input_dir)
    if not root.exists():
        print(f"ERROR: {root} does not exist")
        return 2
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        print("ERROR: ffprobe not found (install ffmpeg: make setup)")
        return 2
    base = root if root.is_dir() else root.parent
    output = Path(args.output) if args.output else base / REPORT_NAME

    videos = find_videos(root)
    total = len(videos)
    print(f"TOTAL_VIDEOS_TO_PROCESS: {total}")
    entries, ok, failed = [], 0, 0
    for i, path in enumerate(videos, 1):
        name = path.relative_to(base).as_posix()
        print(f"PROCESSING_VIDEO: {i}/{total}: {name}")
        entry = {"path": name, "size": path.stat().st_size}
        try:
            entry.update(probe(ffprobe, path))
            entry["readable"] = True
            ok += 1
            print(f"SUCCESS: {i}/{total}: {name} -> {describe(entry)}")
        except (ValueError, OSError, subprocess.TimeoutExpired) as exc:
            entry.update(readable=False, error=str(exc))
            failed += 1
            print(f"FAILED: {i}/{total}: {name}: {exc}")
        entries.append(entry)
    write_atomically(output, {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "input_dir": str(root),
        "videos": entries,
        "readable": ok,
        "unreadable": failed,
        "total_duration_s": round(sum(e.get("duration_s") or 0 for e in entries), 3),
    })
    print(f"REPORT: {output}")
    print(f"SUMMARY: {ok}/{total} succeeded, {failed} failed, 0 skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
