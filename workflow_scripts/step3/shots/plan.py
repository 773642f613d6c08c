"""Which videos a run analyses: found in the input folder, named, and split
into those to do and those whose results are already complete; the dry run's
plan."""
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from shots.config import Config
from shots.frames.probe import DecodeError, probe
from shots.video_job import VideoJob
from stepkit.scene_results import is_complete, result_paths
from stepkit.videos import find_videos, folder_videos, relative_name

ALREADY_DONE = "results complete (use --force to redo)"


class SelectionError(ValueError):
    """A video named in ``videos`` is not a video of the input folder."""


def plan_jobs(config: Config, root: Path,
              on_unreadable: Optional[Callable[[Path, str], None]] = None) -> List[VideoJob]:
    """One job per video under ``root``, numbered from 1 in path order. Raises
    stepkit.videos.FolderError when ``root`` itself cannot be read."""
    videos = find_videos(root, config.extensions, on_unreadable)
    if config.videos is not None:
        videos = _selected(videos, config.videos, root)
    siblings: Dict[Path, List[Path]] = {}
    jobs = []
    for i, video in enumerate(videos, 1):
        folder = video.parent
        if folder not in siblings:
            siblings[folder] = folder_videos(folder, config.extensions)
        jobs.append(VideoJob(i, video, relative_name(video, root), result_paths(video, siblings[folder] + [video])))
    return jobs


def _selected(videos: List[Path], wanted: List[str], root: Path) -> List[Path]:
    """The videos named in ``wanted`` (relative to ``root``, ``/`` or ``\\``
    separators), in the usual order; a name that is not one of them raises
    SelectionError naming it."""
    by_name = {relative_name(v, root): v for v in videos}
    keep = set()
    for name in wanted:
        key = name.replace("\\", "/").strip()
        while key.startswith("./"):
            key = key[2:]
        if key not in by_name:
            raise SelectionError(f"videos: {name!r} is not a video of the input folder {root}")
        keep.add(key)
    return [v for name, v in by_name.items() if name in keep]


def split_done(jobs: List[VideoJob], config: Config) -> Tuple[List[VideoJob], List[VideoJob]]:
    """(to analyse, already complete); with ``force`` nothing counts as complete."""
    todo, done = [], []
    for job in jobs:
        complete = not config.force and is_complete(job.path, job.paths, config.threshold)
        (done if complete else todo).append(job)
    return todo, done


def dry_run(report, jobs: List[VideoJob], done: List[VideoJob], root: Path) -> None:
    """Print what a run would do: each video's plan, from ffprobe only."""
    n = len(jobs)
    skipped = set(done)
    for job in jobs:
        report.processing(job.index, n, job.name)
        if job in skipped:
            report.skipped(job.index, n, job.name, ALREADY_DONE)
            continue
        try:
            info = probe(job.path)
            detail = (f"{info.width}x{info.height} {info.codec}, {info.fps:.3f} fps, "
                      f"about {info.expected_frames or '?'} frames")
        except DecodeError as exc:
            detail = f"would fail: {exc}"
        report.line(f"PLAN: {job.index}/{n}: {job.name} -> {relative_name(job.paths.csv, root)} ({detail})")
    report.line(f"DRY_RUN: {n - len(done)} video(s) would be analysed, {len(done)} skipped; "
                f"no model loaded, nothing written")
