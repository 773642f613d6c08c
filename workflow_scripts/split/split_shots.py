"""Split: cuts every analysed video of the projects folder into one file per
scene (its review when there is one, else STEP3's scenes), printing the
progress lines of docs/progress-protocol.md.

Output: ``<output-dir>/<folder of the video>/<name>/<name>-scene-001.mp4``...
and ``shots.json`` (what was cut, written last: the folder is done). The
default output dir is ``<input-dir>/.shots``: a hidden folder, so that STEP3
and Inventory (which skip hidden names) never take the shots for videos to
analyse. Each video's folder is made under a temporary name and renamed into
place; a re-run skips the videos whose folder matches their scenes.

Exit codes: 0 every video split or skipped, 1 at least one failed, 2 usage error.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from stepkit.progress_lines import ProgressEmitter
from stepkit.scene_results import result_bases, video_identity
from stepkit.videos import FolderError, find_videos, folder_videos, relative_name

import cutter
from scene_source import NoScenes, scenes_of

FORMAT = "split-shots/1"
MARKER = "shots.json"
TEMP_PREFIX = ".split-tmp-"


def has_audio(video: Path) -> bool:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a", "-show_entries", "stream=index",
                          "-of", "csv=p=0", str(video)], capture_output=True, text=True, timeout=120)
    return bool(out.stdout.strip())


def wanted_marker(video: Path, scenes, source: str, mode: str, names) -> dict:
    return {"format": FORMAT, "video": {"file": video.name, "identity": video_identity(video)},
            "source": source, "mode": mode, "scenes": [list(s) for s in scenes], "files": names}


def is_done(folder: Path, marker: dict) -> bool:
    try:
        old = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return old == marker and all((folder / name).is_file() for name in marker["files"])


def remove_stale_temporaries(out_root: Path) -> None:
    """Folders of a split that was killed: their pid is gone."""
    if not out_root.is_dir():
        return
    for path in out_root.rglob(TEMP_PREFIX + "*"):
        m = re.match(rf"{re.escape(TEMP_PREFIX)}(\d+)-", path.name)
        if m and path.is_dir() and int(m.group(1)) != os.getpid():
            try:
                os.kill(int(m.group(1)), 0)
            except ProcessLookupError:
                shutil.rmtree(path, ignore_errors=True)
            except PermissionError:
                pass


def split_one(video: Path, target: Path, copy: bool, progress) -> tuple:
    """Cut ``video`` into ``target``; returns (number of files, source, skipped?)."""
    scenes, source, doc = scenes_of(video)
    frames, fps = doc["video"]["frame_count"], doc["video"]["fps"]
    base = target.name
    extension = video.suffix.lower() if copy else ".mp4"
    width = max(3, len(str(len(scenes))))
    names = [f"{base}-scene-{i:0{width}d}{extension}" for i in range(1, len(scenes) + 1)]
    marker = wanted_marker(video, scenes, source, "copy" if copy else "reencode", names)
    if is_done(target, marker):
        return len(scenes), source, True
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / f"{TEMP_PREFIX}{os.getpid()}-{base}"
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir()
    try:
        if copy:
            for i, (first, last) in enumerate(scenes):
                cutter.copy_scene(video, first, last, fps, temp / names[i])
                progress(last, frames)
        else:
            parts = cutter.pieces(scenes, frames)
            cutter.run(cutter.command(video, parts, temp, extension, False, has_audio(video)),
                       lambda done: progress(done, frames))
            cutter.keep_scenes(temp, parts, extension, names)
        (temp / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(temp, target)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return len(scenes), source, False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-dir", default="projects", help="the projects folder")
    parser.add_argument("--output-dir", help="where the shots go (default <input-dir>/.shots)")
    parser.add_argument("--copy", action="store_true",
                        help="stream copy: fast, no re-encoding, but each file starts at a keyframe, not at its exact frame")
    args = parser.parse_args(argv)
    report = ProgressEmitter()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # cancel: the finally blocks clean up
    root = Path(args.input_dir)
    out_root = Path(args.output_dir) if args.output_dir else root / ".shots"
    if not root.is_dir():
        report.error(f"input folder not found: {root}")
        return 2
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        report.error("ffmpeg and ffprobe are needed on PATH")
        return 2
    report.config(json.dumps({"input_dir": str(root), "output_dir": str(out_root), "copy": args.copy}))
    if args.copy:
        report.warning("stream copy: each shot starts at the keyframe at or before its first frame, so shots "
                       "can begin early and overlap; leave out --copy for frame-accurate files")
    try:
        videos = find_videos(root)
    except FolderError as exc:
        report.error(str(exc))
        return 2
    remove_stale_temporaries(out_root)
    total, done, failed, skipped = len(videos), 0, 0, 0
    report.total(total)
    for i, video in enumerate(videos, 1):
        name = relative_name(video, root)
        report.processing(i, total, name)
        base = result_bases(folder_videos(video.parent) + [video])[video]
        target = out_root / Path(name).parent / base
        started = time.monotonic()
        try:
            count, source, was_done = split_one(video, target, args.copy,
                                                lambda d, t: report.frames(i, total, d, t))
        except NoScenes as exc:
            report.failed(i, total, name, str(exc))
            failed += 1
            continue
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            report.failed(i, total, name, str(exc))
            failed += 1
            continue
        if was_done:
            report.skipped(i, total, name, "shots complete")
            skipped += 1
            continue
        where = relative_name(target, root) if out_root == root / ".shots" else str(target)
        report.info(f"{name}: {count} shots from {'its review' if source == 'review' else 'STEP3'} "
                    f"in {time.monotonic() - started:.1f} s")
        report.success(i, total, name, where, count)
        done += 1
    report.summary(done, total, failed, skipped)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
