"""Small helpers shared by the STEP3 benchmarks: timed subprocesses with their
peak memory, machine description, markdown tables."""
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
STEP3 = REPO / "workflow_scripts" / "step3"
SCRIPT = STEP3 / "run_transnet.py"
sys.path.insert(0, str(STEP3))


def run_measured(cmd, env=None, cwd=REPO, timeout=3600, sample_every=0.2):
    """Run ``cmd``; return (wall seconds, peak RSS of the process tree in MiB,
    RSS samples over time, completed stdout, return code)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    samples = []
    done = threading.Event()

    def sample():
        try:
            root = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while not done.is_set():
            total = 0
            try:
                for p in [root] + root.children(recursive=True):
                    try:
                        total += p.memory_info().rss
                    except psutil.NoSuchProcess:
                        pass
            except psutil.NoSuchProcess:
                break
            samples.append((time.perf_counter() - start, total / 2**20))
            done.wait(sample_every)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, _ = proc.communicate(timeout=timeout)
    wall = time.perf_counter() - start
    done.set()
    t.join()
    peak = max((m for _, m in samples), default=0.0)
    return wall, peak, samples, out, proc.returncode


class CpuBusy:
    """Share of all the machine's cores that were busy between start and stop
    (from /proc/stat): tells a decode-bound run from one that waits."""

    @staticmethod
    def _read():
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields), idle

    def __enter__(self):
        self._start = self._read()
        return self

    def __exit__(self, *exc):
        total, idle = self._read()
        dt, di = total - self._start[0], idle - self._start[1]
        self.share = (dt - di) / dt if dt else 0.0
        return False


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import torch
    parts = [f"{os.cpu_count()} CPUs ({cpu})", f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM",
             f"torch {torch.__version__}", f"CPU capability {torch.backends.cpu.get_cpu_capability()}"]
    if torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}")
    return ", ".join(parts)


def table(headers, rows) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True)


def frame_count(video) -> int:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
                          "stream=nb_read_packets", "-of", "csv=p=0", str(video)],
                         capture_output=True, text=True, check=True).stdout
    return int(out.strip().strip(","))
