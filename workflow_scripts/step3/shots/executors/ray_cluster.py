"""The Ray cluster a run uses: joined (``ray_address`` "auto", "host:port",
"ray://host:10001") or started here for the run ("": a local instance sized
to this machine, started lean and shut down at the end).

Lean: no dashboard, no usage statistics, a small object store (frames travel
in 2 MB chunks and only a bounded number are ever in flight), Ray's files in
a temporary folder that is removed afterwards, and the workers' output kept
off our stdout (the driver alone prints progress lines).
"""
import logging
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from shots.executors import SetupFailed
from shots.frames.ffmpeg_source import cpu_count

STEP3_DIR = str(Path(__file__).resolve().parents[2])  # what the workers import ``shots`` from
MB = 1 << 20


@dataclass
class Node:
    node_id: str
    address: str
    cpus: float
    gpus: float


@dataclass
class Cluster:
    address: str                      # "" when started here
    nodes: List[Node] = field(default_factory=list)
    temp_dir: Optional[str] = None    # a local instance's files

    @property
    def started_here(self) -> bool:
        return not self.address

    @property
    def cpus(self) -> int:
        return int(sum(n.cpus for n in self.nodes))

    @property
    def gpus(self) -> int:
        return int(sum(n.gpus for n in self.nodes))

    def describe(self) -> str:
        where = "a local Ray instance started for this run" if self.started_here else f"Ray cluster at {self.address}"
        return f"{where}: {len(self.nodes)} node(s), {self.cpus} CPU(s), {self.gpus} GPU(s)"


def local_object_store_bytes(cpus: int) -> int:
    """Room for the frames in flight (a few 2 MB chunks per decoding task) and
    the model's batches: 64 MB per CPU, between 256 MB and 2 GB."""
    return max(256 * MB, min(2048 * MB, 64 * MB * cpus))


def connect(address: str) -> Cluster:
    """Join or start the cluster; raises SetupFailed with one line. Without an
    address, RAY_ADDRESS names the cluster, as for any Ray program."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS", "").strip()
    if address.startswith("ray://"):
        # Tried with ray[client] 2.60 against a local head: the decoding
        # tasks' generators fail there ("'ObjectRefGenerator' object has no
        # attribute 'binary'"), and its init cannot carry a JobConfig.
        raise SetupFailed(f"ray_address {address}: Ray Client (ray://) cannot carry STEP3's decoding tasks, "
                          f"which stream frames as Ray generators; run STEP3 on a node of the cluster "
                          f"with ray_address auto or host:port")
    try:
        import ray
    except ImportError as exc:
        raise SetupFailed(f"executor 'ray' needs the ray package in this venv (run `make setup`): {exc}") from None
    # Ray's own notices (token authentication, the instance it started) are not ours to print.
    logging.getLogger("ray").setLevel(logging.ERROR)
    kwargs = dict(log_to_driver=False, logging_level=logging.ERROR, namespace="step3",
                  job_config=ray.job_config.JobConfig(code_search_path=[STEP3_DIR]))
    temp_dir = None
    if not address:
        cpus = cpu_count()
        temp_dir = tempfile.mkdtemp(prefix="step3-ray-")
        kwargs.update(num_cpus=cpus, include_dashboard=False, object_store_memory=local_object_store_bytes(cpus),
                      _temp_dir=temp_dir)
    else:
        kwargs.update(address=address)
    _errors_to_stderr()
    # ray.init replaces the SIGTERM handler with a bare exit: ours unwinds (and cleans up).
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(**kwargs)
    except Exception as exc:
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
        where = "start a local Ray instance" if not address else f"connect to the Ray cluster at {address}"
        raise SetupFailed(f"cannot {where}: {type(exc).__name__}: {_first_line(exc)}") from None
    finally:
        if sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)
    cluster = Cluster(address, temp_dir=temp_dir)
    cluster.nodes = alive_nodes()
    return cluster


def _errors_to_stderr() -> None:
    """Ray prints the cluster's error notices (a worker that died, a task
    retried) on stdout, from a thread, and a line of ours could land inside
    one: they go to stderr instead, where the dashboard keeps them in the log
    without reading them as progress. (A private function of Ray's: if it is
    gone, Ray's own behaviour stays.)"""
    import ray._private.worker as ray_worker
    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None or getattr(original, "step3_stderr", False):
        return

    def to_stderr(data, *args, **kwargs):
        return original(dict(data, is_err=True), *args, **kwargs)

    to_stderr.step3_stderr = True
    ray_worker.print_to_stdstream = to_stderr


def alive_nodes() -> List[Node]:
    import ray
    nodes = []
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        res = n.get("Resources") or {}
        nodes.append(Node(n["NodeID"], n.get("NodeManagerAddress", "?"), float(res.get("CPU", 0)),
                          float(res.get("GPU", 0))))
    return nodes


def disconnect(cluster: Optional[Cluster]) -> None:
    """Leave the cluster (a local instance is shut down with it) and remove its files."""
    try:
        import ray
        if ray.is_initialized():
            ray.shutdown()
    except Exception:  # leaving must not hide why the run ended
        pass
    if cluster is not None and cluster.temp_dir:
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
