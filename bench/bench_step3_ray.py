"""STEP3's Ray executor against the local executor on the same batch, in one run.

    transnet_env/bin/python bench/bench_step3_ray.py                      # a small batch (CPU machine)
    transnet_env/bin/python bench/bench_step3_ray.py --batch gpu12        # the 12-video GPU batch
    transnet_env/bin/python bench/bench_step3_ray.py --repeats 3 --extra=--mixed-precision
    transnet_env/bin/python bench/bench_step3_ray.py --joined          # + Ray on an instance already running

Each repeat runs the local executor (``--num-workers auto``) and the Ray
executor (a local Ray instance started by the run, sized to this machine),
alternately, on copies of the same videos, with ``--device auto``. Reported:
wall time and frames/s end to end (Python's start, Ray's start, the model's
load included), the Ray/local throughput ratio of each repeat, the start-up
(process start to the cluster's INFO line, and to the model's ready line),
the driver's peak RSS (the run_transnet.py process alone, and with its
children: the local engine's decoders, or the Ray instance's processes), and
whether the CSVs are byte-identical. Prints a markdown table for RESULTS.md.

Before the first repeat, one untimed process imports torch and Ray and starts
and stops a Ray instance, so that both executors find their files in the page
cache (on a fresh machine the first run of each otherwise pays for reading
its packages from disk, and only the local executor's torch is warm for the
Ray run after it). ``--joined`` adds a third run per repeat: the Ray executor
joining an instance started once beforehand (``ray start --head``, sized to
this machine), as on a machine that keeps a cluster running; its start-up is
the connection, not the instance's start, and its "with children" is the
driver alone (the instance's processes are not the run's children).
"""
import argparse
import os
import secrets
import shutil
import socket
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


QUIET = dict(RAY_USAGE_STATS_ENABLED="0")
WARM_UP = ("import logging, tempfile, shutil, torch, ray; d = tempfile.mkdtemp(prefix='step3-ray-'); "
           "ray.init(num_cpus=1, include_dashboard=False, _temp_dir=d, logging_level=logging.ERROR); "
           "ray.get(ray.remote(lambda: 0).remote()); ray.shutdown(); shutil.rmtree(d, ignore_errors=True)")


def warm_up():
    subprocess.run([sys.executable, "-c", WARM_UP], env=dict(os.environ, **QUIET), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=300)


def run_once(executor, folder, logs, extra, head=None):
    cmd = [sys.executable, str(SCRIPT), "--input-dir", str(folder), "--log-dir", str(logs), "--force",
           "--device", "auto", "--executor", executor, *extra]
    if executor == "local":
        cmd += ["--num-workers", "auto"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", **QUIET)
    if head is not None:
        cmd += ["--ray-address", head.address]
        env.update(head.env)
    return Run(cmd, env).wait()


class Head:
    """A Ray instance started once for the ``--joined`` runs, sized to this machine."""

    def __init__(self, base: Path):
        self.temp = base / "ray-head"
        token = base / "ray-token"  # Ray's token authentication, for the head and the runs that join it
        token.write_text(secrets.token_hex(32))
        self.env = dict(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        cli = Path(sys.executable).parent / "ray"  # (an unpacked wheel has no console script: its module)
        ray_cli = [str(cli)] if cli.exists() else [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]
        subprocess.run([*ray_cli, "start", "--head", f"--port={port}",
                        "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={self.temp}"],
                       env=dict(os.environ, **QUIET, **self.env), check=True, capture_output=True, timeout=300)
        self.address = f"127.0.0.1:{port}"

    def stop(self):
        """Its processes (those naming its folder, and their children) end; no other Ray on this machine."""
        found = {}
        for p in psutil.process_iter(["cmdline"]):
            try:
                if any(str(self.temp) in part for part in (p.info["cmdline"] or [])):
                    found.update({q.pid: q for q in [p, *p.children(recursive=True)]})
            except psutil.Error:
                pass
        for p in found.values():
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(list(found.values()), timeout=10)


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
    parser.add_argument("--joined", action="store_true",
                        help="also run the Ray executor on an instance started once beforehand")
    args = parser.parse_args()
    extra = [x for x in args.extra.split(",") if x]
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        videos = sorted((base / "videos").glob("*.mp4"))
        if not videos:
            videos = small_batch(base / "videos") if args.batch == "small" else gpu_batch(base)
        frames = sum(frame_count(v) for v in videos)
        folders = {}
        kinds = ("local", "ray", "ray joined") if args.joined else ("local", "ray")
        for executor in kinds:
            folders[executor] = base / executor.replace(" ", "-")
            shutil.rmtree(folders[executor], ignore_errors=True)
            folders[executor].mkdir()
            for v in videos:
                shutil.copy2(v, folders[executor] / v.name)
        print(f"{machine()}; {len(videos)} videos, {frames:,} frames; {args.repeats} repeat(s)", flush=True)
        warm_up()
        head = Head(base) if args.joined else None
        try:
            rows, ratios = measure(args.repeats, kinds, folders, frames, base / "logs", extra, head)
        finally:
            if head is not None:
                head.stop()
        print()
        print(table(["repeat", "executor", "wall s", "frames/s", "cluster ready s", "model ready s",
                     "driver peak RSS MiB", "with children MiB", "result", "ray/local throughput"], rows))
        same = ", ".join(f"{k} {same_csvs(folders['local'], folders[k])}" for k in kinds[1:])
        print(f"\nCSVs identical to local (last repeat): {same}; ray/local throughput: {', '.join(ratios)}")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


def measure(repeats, kinds, folders, frames, logs, extra, head):
    """The table's rows and each repeat's Ray/local throughput ratios."""
    rows, ratios = [], []
    for r in range(1, repeats + 1):
        walls = {}
        for executor in kinds:
            run = run_once(executor.split()[0], folders[executor], logs, extra,
                           head if executor == "ray joined" else None)
            walls[executor] = run.wall
            summary = next((ln for _, ln in run.lines if ln.startswith("SUMMARY:")), "no SUMMARY")
            started = run.first("INFO: a local Ray instance") or run.first("INFO: Ray cluster")
            rows.append([r, executor, f"{run.wall:.1f}", f"{frames / run.wall:,.0f}",
                         "-" if started is None else f"{started:.1f}",
                         f"{run.first('INFO: model ready') or 0:.1f}", f"{run.peak_driver:,.0f}",
                         f"{run.peak_tree:,.0f}", summary.split(": ", 1)[-1]])
            print(rows[-1], flush=True)
        for row in rows[-len(kinds):]:
            ray = row[1] != "local"
            row.append(f"{walls['local'] / walls[row[1]]:.2f}" if ray else "")
            if ray:
                ratios.append(f"{row[-1]} ({row[1]})" if len(kinds) > 2 else row[-1])
    return rows, ratios


if __name__ == "__main__":
    main()
