"""STEP3's Ray executor against the local executor on the same batch, in one run.

    transnet_env/bin/python bench/bench_step3_ray.py                      # a small batch (CPU machine)
    transnet_env/bin/python bench/bench_step3_ray.py --batch gpu12        # the 12-video GPU batch
    transnet_env/bin/python bench/bench_step3_ray.py --repeats 3 --extra=--mixed-precision

Each repeat runs the local executor (``--num-workers auto``) and the Ray
executor (a local Ray instance started by the run, sized to this machine),
alternately, on copies of the same videos, with ``--device auto``. Reported:
wall time and frames/s end to end (Python's start, Ray's start, the model's
load included), the Ray/local throughput ratio of each repeat, the start-up
(process start to the cluster's INFO line, and to the model's ready line),
the driver's peak RSS (the run_transnet.py process alone, and with its
children: the local engine's decoders, or the Ray instance's processes), and
whether the CSVs are byte-identical. Prints a markdown table for RESULTS.md.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from benchlib import REPO, SCRIPT, ffmpeg, frame_count, machine, table

from shots.model import weights as assets  # noqa: E402


def small_batch(folder: Path) -> list:
    """Four short videos of different sizes made from the sample (about 1,600 frames)."""
    sample = assets.sample_video_path()
    folder.mkdir(parents=True)
    plan = [("s160_40s.mp4", 40, None), ("s480_10s.mp4", 10, "854:480"), ("s720_8s.mp4", 8, "1280:720"),
            ("s160_12s_late.mp4", 12, None)]
    for name, seconds, size in plan:
        start = ["-ss", "100"] if "late" in name else []
        scale = ["-vf", f"scale={size}"] if size else []
        ffmpeg(*start, "-i", sample, "-t", seconds, *scale, "-c:v", "libx264", "-preset", "ultrafast", "-an",
               folder / name)
    return sorted(folder.iterdir())


def gpu_batch(folder: Path) -> list:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_step3_gpu import make_videos  # the 12 videos of the GPU end-to-end bench
    return make_videos(folder)


class Run:
    """run_transnet.py with its output lines timed and its memory sampled."""

    def __init__(self, cmd, env):
        self.start = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        self.lines = []  # (seconds since start, line)
        self.peak_driver = self.peak_tree = 0.0
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self):
        try:
            root = psutil.Process(self.proc.pid)
        except psutil.NoSuchProcess:
            return
        while not self._done.is_set():
            try:
                own = root.memory_info().rss
                tree = own
                for child in root.children(recursive=True):
                    try:
                        tree += child.memory_info().rss
                    except psutil.NoSuchProcess:
                        pass
            except psutil.NoSuchProcess:
                break
            self.peak_driver = max(self.peak_driver, own / 2**20)
            self.peak_tree = max(self.peak_tree, tree / 2**20)
            self._done.wait(0.2)

    def wait(self):
        for line in self.proc.stdout:
            self.lines.append((time.perf_counter() - self.start, line.rstrip("\n")))
        self.proc.wait()
        self.wall = time.perf_counter() - self.start
        self._done.set()
        self._sampler.join()
        return self

    def first(self, prefix):
        return next((t for t, ln in self.lines if ln.startswith(prefix)), None)


def run_once(executor, folder, logs, extra):
    cmd = [sys.executable, str(SCRIPT), "--input-dir", str(folder), "--log-dir", str(logs), "--force",
           "--device", "auto", "--executor", executor, *extra]
    if executor == "local":
        cmd += ["--num-workers", "auto"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", RAY_USAGE_STATS_ENABLED="0")
    return Run(cmd, env).wait()


def same_csvs(a: Path, b: Path) -> str:
    names = sorted(p.relative_to(a) for p in a.rglob("*.csv"))
    same = sum((a / n).read_bytes() == (b / n).read_bytes() for n in names if (b / n).exists())
    return f"{same}/{len(names)}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", choices=("small", "gpu12"), default="small")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--extra", default="", help="more run_transnet.py flags for both, comma-separated")
    parser.add_argument("--keep", help="make the videos in this folder (kept) instead of a temporary one")
    args = parser.parse_args()
    extra = [x for x in args.extra.split(",") if x]
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        videos = sorted((base / "videos").glob("*.mp4"))
        if not videos:
            videos = small_batch(base / "videos") if args.batch == "small" else gpu_batch(base)
        frames = sum(frame_count(v) for v in videos)
        folders = {}
        for executor in ("local", "ray"):
            folders[executor] = base / executor
            shutil.rmtree(folders[executor], ignore_errors=True)
            folders[executor].mkdir()
            for v in videos:
                shutil.copy2(v, folders[executor] / v.name)
        print(f"{machine()}; {len(videos)} videos, {frames:,} frames; {args.repeats} repeat(s)", flush=True)
        rows, ratios = [], []
        for r in range(1, args.repeats + 1):
            got = {}
            for executor in ("local", "ray"):
                run = run_once(executor, folders[executor], base / "logs", extra)
                got[executor] = run
                summary = next((ln for _, ln in run.lines if ln.startswith("SUMMARY:")), "no SUMMARY")
                started = run.first("INFO: a local Ray instance") or run.first("INFO: Ray cluster")
                rows.append([r, executor, f"{run.wall:.1f}", f"{frames / run.wall:,.0f}",
                             "-" if started is None else f"{started:.1f}",
                             f"{run.first('INFO: model ready') or 0:.1f}", f"{run.peak_driver:,.0f}",
                             f"{run.peak_tree:,.0f}", summary.split(": ", 1)[-1]])
                print(rows[-1], flush=True)
            ratios.append(got["local"].wall / got["ray"].wall)
            rows[-1].append(f"{ratios[-1]:.2f}")
            rows[-2].append("")
        print()
        print(table(["repeat", "executor", "wall s", "frames/s", "cluster ready s", "model ready s",
                     "driver peak RSS MiB", "with children MiB", "result", "ray/local throughput"], rows))
        print(f"\nCSVs identical (last repeat): {same_csvs(folders['local'], folders['ray'])}; "
              f"ray/local throughput: {', '.join(f'{x:.2f}' for x in ratios)}")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
