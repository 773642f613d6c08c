"""STEP3 on 1, 2, 4... GPUs of one host with the Ray executor, in one call (issue 13).

    transnet_env/bin/python bench/bench_multigpu.py                    # every GPU count up to the machine's
    transnet_env/bin/python bench/bench_multigpu.py --gpus 1,2 --copies 24 --hours 2

The batch: the sample re-encoded once to 1080p H.264, hard-linked ``--copies``
times under other names, plus ``--hours`` one-hour videos made from that
re-encode by stream copy (no re-encoding: seconds). Each GPU count runs the
same batch with a local Ray instance sized to the machine but shown only the
first N GPUs (CUDA_VISIBLE_DEVICES), ``--executor ray --device auto`` and
``--mixed-precision`` unless told otherwise, one model actor per GPU.

Per count: frames/s end to end (Python's and Ray's start included), scaling
efficiency against the 1-GPU figure (throughput / (N x the 1-GPU throughput)),
GPU busy share per GPU and cores busy (sampled with nvidia-smi and
/proc/stat), the decoders that decoded the frames (the results' frame_source),
peak host memory (the machine's used memory above its level before the run)
and peak GPU memory per GPU, and whether every CSV is byte-identical to the
1-GPU run's. Prints markdown for bench/RESULTS.md.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from benchlib import REPO, SCRIPT, CpuBusy, ffmpeg, machine, table

from shots.model import weights as assets  # noqa: E402


def make_batch(folder: Path, copies: int, hours: int) -> list:
    folder.mkdir(parents=True)
    master = folder.parent / "master_1080p.mp4"
    ffmpeg("-i", assets.sample_video_path(), "-vf", "scale=1920:1080", "-c:v", "libx264", "-preset", "veryfast",
           "-crf", "20", "-an", master)
    videos = []
    for i in range(copies):
        target = folder / f"copy_{i:02d}.mp4"
        os.link(master, target)  # the same bytes under another name: no disk, no encoding
        videos.append(target)
    if hours:
        # The concat demuxer offsets each copy's timestamps (a -stream_loop stream
        # copy leaves jumps at the joins): clean timestamps, no re-encoding.
        listing = folder.parent / "hour.txt"
        listing.write_text(f"file '{master}'\n" * 17)
        hour = folder.parent / "hour_1080p.mp4"
        ffmpeg("-f", "concat", "-safe", "0", "-i", listing, "-c", "copy", hour)
        for h in range(hours):
            target = folder / f"hour_{h}.mp4"
            os.link(hour, target)
            videos.append(target)
    return videos


class GpuSampler:
    """nvidia-smi every half second: busy share and memory used, per GPU."""

    def __init__(self):
        self.samples = []  # [(util per gpu, memory MiB per gpu)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.wait(0.5):
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True).stdout
            rows = [[float(v) for v in line.split(",")] for line in out.strip().splitlines() if line.strip()]
            self.samples.append(([r[0] for r in rows], [r[1] for r in rows]))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def busy(self, n: int) -> list:
        return [sum(s[0][i] for s in self.samples) / max(1, len(self.samples)) / 100 for i in range(n)]

    def peak_memory(self, n: int) -> list:
        return [max((s[1][i] for s in self.samples), default=0.0) for i in range(n)]


def run_once(videos_dir: Path, gpus: int, extra: list, logs: Path) -> dict:
    for stale in videos_dir.glob("*.csv"):
        stale.unlink()
    for stale in videos_dir.glob("*.scenes.json"):
        stale.unlink()
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=",".join(str(i) for i in range(gpus)), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, str(SCRIPT), "--input-dir", str(videos_dir), "--executor", "ray", "--device", "auto",
           "--log-dir", str(logs), *extra]
    base_used = psutil.virtual_memory().used
    peak = [0]
    done = threading.Event()

    def watch_memory():
        while not done.wait(0.5):
            peak[0] = max(peak[0], psutil.virtual_memory().used - base_used)

    watcher = threading.Thread(target=watch_memory, daemon=True)
    watcher.start()
    start = time.perf_counter()
    with GpuSampler() as sampler, CpuBusy() as cores:
        out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - start
    done.set()
    watcher.join()
    if out.returncode != 0:
        tail = "\n".join((out.stdout + out.stderr).splitlines()[-15:])
        raise SystemExit(f"{gpus} GPU(s): run_transnet.py exited {out.returncode}:\n{tail}")
    frames, sources, csvs = 0, {}, {}
    for result in sorted(videos_dir.glob("*.scenes.json")):
        data = json.loads(result.read_text())
        n = data["video"]["frame_count"]
        frames += n
        source = data.get("frame_source") or "?"
        source = "+".join(source) if isinstance(source, list) else source
        sources[source] = sources.get(source, 0) + n
    for csv in sorted(videos_dir.glob("*.csv")):
        csvs[csv.name] = hashlib.sha256(csv.read_bytes()).hexdigest()
    return {"gpus": gpus, "wall": wall, "frames": frames, "fps": frames / wall, "busy": sampler.busy(gpus),
            "gpu_mem": sampler.peak_memory(gpus), "cores": cores.share, "sources": sources,
            "host_mib": peak[0] / 2**20, "csvs": csvs}


def gpu_count() -> int:
    if shutil.which("nvidia-smi") is None:
        return 0
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return len([line for line in out.stdout.splitlines() if line.startswith("GPU ")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", help="GPU counts to run, e.g. 1,2,4 (default: 1, 2, 4... up to the machine's)")
    parser.add_argument("--copies", type=int, default=24, help="copies of the 1080p sample (5,301 frames each)")
    parser.add_argument("--hours", type=int, default=2, help="one-hour videos (90,000 frames each)")
    parser.add_argument("--extra", default="--mixed-precision", help="more run_transnet.py arguments")
    args = parser.parse_args()
    available = gpu_count()
    if available == 0:
        raise SystemExit("no NVIDIA GPU here (nvidia-smi -L lists none)")
    counts = [int(c) for c in args.gpus.split(",")] if args.gpus else \
        [n for n in (1, 2, 4, 8, 16) if n <= available]
    work = Path(tempfile.mkdtemp(prefix="step3-multigpu-"))
    try:
        make_started = time.perf_counter()
        videos = make_batch(work / "videos", args.copies, args.hours)
        print(f"batch: {len(videos)} videos made in {time.perf_counter() - make_started:.0f} s", flush=True)
        results = []
        for n in counts:
            results.append(run_once(work / "videos", n, args.extra.split(), work / "logs"))
            r = results[-1]
            print(f"{n} GPU(s): {r['frames']} frames in {r['wall']:.1f} s = {r['fps']:.0f} frames/s", flush=True)
        report(results, available, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(results: list, available: int, args) -> None:
    one = results[0]
    rows = []
    for r in results:
        efficiency = r["fps"] / (r["gpus"] * one["fps"]) if one["gpus"] == 1 else float("nan")
        same = sum(1 for name, digest in r["csvs"].items() if one["csvs"].get(name) == digest)
        rows.append([r["gpus"], f"{r['wall']:.1f}", f"{r['fps']:,.0f}", f"{efficiency:.2f}",
                     " / ".join(f"{b:.0%}" for b in r["busy"]), f"{r['cores']:.0%}",
                     ", ".join(f"{k} {v:,}" for k, v in sorted(r["sources"].items())),
                     f"{r['host_mib']:,.0f}", " / ".join(f"{m:,.0f}" for m in r["gpu_mem"]),
                     f"{same}/{len(one['csvs'])}"])
    print()
    print(f"Machine: {machine()}; {available} GPU(s); {time.strftime('%d %B %Y')}")
    print(f"Batch: {args.copies} copies of the sample at 1080p + {args.hours} one-hour videos, "
          f"{one['frames']:,} frames; extra arguments: {args.extra}")
    print()
    print(table(["GPUs", "wall s", "frames/s", "efficiency vs 1 GPU", "GPU busy (each)", "cores busy",
                 "frames by decoder", "peak host MiB", "peak GPU MiB (each)", "CSVs = 1-GPU run"], rows))


if __name__ == "__main__":
    main()
