"""CPU, memory, disk and GPU figures for the system panel.

nvidia-smi is asked at most every few seconds, and never on the caller's
thread: it takes tens of milliseconds when the card is idle and can take
seconds when it is busy, which is exactly when STEP3 runs, and an event
stream waiting for it would hold back the progress events behind it. Its
figures come from the last answer; a background thread fetches the next.
The same for the Ray cluster STEP3 is pointed at (RayProbe), when one is.
"""
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil

GPU_QUERY = ["--query-gpu=name,utilization.gpu,memory.used,memory.total", "--format=csv,noheader,nounits"]
REPO = Path(__file__).resolve().parents[1]

# Run by STEP3's venv (the dashboard's has no Ray): the nodes of the cluster at argv[1].
RAY_QUERY = """
import json, logging, os, sys
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
import ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level=logging.ERROR)
nodes = []
for n in ray.nodes():
    res = n.get("Resources") or {}
    nodes.append({"address": n.get("NodeManagerAddress"), "alive": bool(n.get("Alive")),
                  "cpus": res.get("CPU", 0), "gpus": res.get("GPU", 0),
                  "gpu_types": sorted(k.split(":", 1)[1] for k in res if k.startswith("accelerator_type:"))})
print(json.dumps(nodes))
"""


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


def ray_address(root: Path = REPO, environ=None) -> str:
    """The Ray cluster STEP3 is pointed at: RAY_ADDRESS, else a ``ray_address``
    in config/step3_transnet.json; "" when none is."""
    environ = os.environ if environ is None else environ
    address = environ.get("RAY_ADDRESS", "").strip()
    if address:
        return address
    try:
        value = json.loads((root / "config" / "step3_transnet.json").read_text()).get("ray_address")
    except (OSError, ValueError, AttributeError):
        return ""
    return value.strip() if isinstance(value, str) else ""


class RayProbe:
    """The configured Ray cluster's nodes, asked by STEP3's venv in a
    subprocess (joining a cluster takes seconds) at most every ``every``
    seconds, on a thread of its own; ``state()`` answers from the last reply."""

    def __init__(self, root: Path = REPO, environ=None, every: float = 30.0, timeout: float = 20.0):
        self.root, self.environ, self.every, self.timeout = Path(root), environ, every, timeout
        self._lock = threading.Lock()
        self._state = None
        self._asked = None  # monotonic time of the last question
        self._asking = False

    def state(self):
        """None when no cluster is configured, else its address and nodes (or why they are unknown)."""
        address = ray_address(self.root, self.environ)
        with self._lock:
            if not address:
                self._state = None
                return None
            stale = self._asked is None or time.monotonic() - self._asked >= self.every
            if (stale or (self._state or {}).get("address") != address) and not self._asking:
                self._asking, self._asked = True, time.monotonic()
                threading.Thread(target=self._ask, args=(address,), name="ray-nodes", daemon=True).start()
            if self._state is None or self._state["address"] != address:
                return {"address": address, "nodes": None, "error": None}
            return self._state

    def _ask(self, address: str) -> None:
        state = {"address": address, "nodes": None, "error": None}
        python = self.root / "transnet_env" / "bin" / "python"
        env = dict(os.environ if self.environ is None else self.environ, RAY_USAGE_STATS_ENABLED="0")
        try:
            out = subprocess.run([str(python), "-c", RAY_QUERY, address], capture_output=True, text=True,
                                 timeout=self.timeout, env=env, cwd=tempfile.gettempdir())
            if out.returncode == 0:
                state["nodes"] = json.loads(out.stdout.strip().splitlines()[-1])
            else:
                last = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
                state["error"] = f"cannot reach the Ray cluster at {address}: {(last or ['?'])[-1][:200]}"
        except subprocess.TimeoutExpired:
            state["error"] = f"the Ray cluster at {address} did not answer within {self.timeout:.0f} s"
        except (OSError, ValueError, IndexError) as exc:
            state["error"] = f"cannot reach the Ray cluster at {address}: {type(exc).__name__}: {exc}"[:300]
        with self._lock:
            self._state = state
            self._asking = False


class SystemSampler:
    def __init__(self, disk_path, nvidia_smi: str | None = None, ttl: float = 2.0, ray: RayProbe | None = None):
        self.ray = ray if ray is not None else RayProbe()
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
                self._cached = dict(self._measure_host(), **self._gpu, ray=self.ray.state())
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
