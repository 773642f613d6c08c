"""CPU, memory, disk and GPU figures for the system panel.

nvidia-smi is asked at most every few seconds, and never on the caller's
thread: it takes tens of milliseconds when the card is idle and can take
seconds when it is busy, which is exactly when STEP3 runs, and an event
stream waiting for it would hold back the progress events behind it. Its
figures come from the last answer; a background thread fetches the next.
"""
import os
import shutil
import subprocess
import threading
import time

import psutil

GPU_QUERY = ["--query-gpu=name,utilization.gpu,memory.used,memory.total", "--format=csv,noheader,nounits"]


def parse_nvidia_smi(text: str) -> list[dict]:
    """Parse `nvidia-smi --query-gpu=name,utilization.gpu,memory.used,memory.total --format=csv,noheader,nounits`."""
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        # A GPU name may contain commas: the three numbers are the last fields.
        parts = [p.strip() for p in line.rsplit(",", 3)]
        if len(parts) != 4:
            continue
        name, util, used, total = parts
        gpus.append({"name": name, "utilization": _number(util), "memory_used_mib": _number(used),
                     "memory_total_mib": _number(total)})
    return gpus


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return None  # "[N/A]" on some boards


class SystemSampler:
    def __init__(self, disk_path, nvidia_smi: str | None = None, ttl: float = 2.0):
        self.disk_path = str(disk_path)
        self.nvidia_smi = nvidia_smi if nvidia_smi is not None else shutil.which("nvidia-smi")
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cached = None
        self._at = 0.0
        self._gpu = {"gpus": [], "gpu_error": None}
        self._gpu_asking = False
        psutil.cpu_percent(interval=None)  # the first reading is meaningless: take it now
        self._ask_gpu()  # so that the first page already has an answer

    def sample(self) -> dict:
        """The latest figures; returns at once (the GPU part may be a few seconds old)."""
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._at >= self.ttl:
                self._cached = dict(self._measure_host(), **self._gpu)
                self._at = now
                self._ask_gpu()
            return self._cached

    def _ask_gpu(self) -> None:
        if not self.nvidia_smi or self._gpu_asking:
            return
        self._gpu_asking = True
        threading.Thread(target=self._gpu_answer, name="nvidia-smi", daemon=True).start()

    def _gpu_answer(self) -> None:
        data = {"gpus": [], "gpu_error": None}
        try:
            out = subprocess.run([self.nvidia_smi, *GPU_QUERY], capture_output=True, text=True, timeout=10)
            if out.returncode == 0:
                data["gpus"] = parse_nvidia_smi(out.stdout)
            else:
                data["gpu_error"] = f"nvidia-smi: exit code {out.returncode}: {out.stderr.strip()[:200]}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            data["gpu_error"] = f"nvidia-smi: {exc}"
        with self._lock:
            self._gpu = data
            self._gpu_asking = False
            if self._cached is not None:
                self._cached = dict(self._cached, **data)

    def _measure_host(self) -> dict:
        mem = psutil.virtual_memory()
        data = {
            "time": time.time(),
            "cpu_percent": psutil.cpu_percent(interval=None),
            "cpu_count": psutil.cpu_count() or 1,
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "memory_used": mem.total - mem.available,
            "memory_total": mem.total,
            "memory_percent": mem.percent,
            "disk": None,
        }
        try:
            disk = shutil.disk_usage(self.disk_path)
            data["disk"] = {"path": self.disk_path, "free": disk.free, "total": disk.total}
        except OSError:
            pass
        return data
