"""The Ray executor (``--executor ray``) against the local one, for real: a
local Ray instance started by the run, and a two-node cluster on this machine
(``ray start --head`` plus a second ``ray start --address``, each with its own
resources and temporary folder, started and stopped here), on the sample, a
generated clip with known cuts and the bad-input set.

The same outputs: CSVs byte for byte, JSONs equal but for the timings, the
same FAILED/SUCCESS/SUMMARY lines. A decoding worker or the model actor
killed mid-run changes nothing in the results; a cancelled run leaves none of
its Ray processes behind; a video one node cannot read is one clear line.
"""
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import pytest

from conftest import DROP_FILE_OVERRIDES, REPO, SCRIPT, ffmpeg, lines, load_json, run_step3

RAY = Path(sys.executable).parent / "ray"
QUIET = {"RAY_USAGE_STATS_ENABLED": "0"}
# The lines whose text must not depend on the executor (FRAMES lines come as the work goes).
SAME_LINES = ("TOTAL_VIDEOS_TO_PROCESS:", "PROCESSING_VIDEO:", "FAILED:", "SUCCESS:", "SKIPPED:", "SUMMARY:",
              "DEVICE:")


def add_bad_files(folder: Path, cuts: Path) -> None:
    """The bad-input set of test_cli_integration.py."""
    folder.mkdir(parents=True)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "random.mp4").write_bytes(np.random.default_rng(1).integers(0, 256, 300_000, dtype=np.uint8).tobytes())
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=3", "-c:a", "aac", str(folder / "audio_only.mp4"))
    whole = folder.parent / "whole.mkv"
    ffmpeg("-i", str(cuts), "-c", "copy", str(whole))
    data = whole.read_bytes()
    whole.unlink()
    (folder / "half.mkv").write_bytes(data[: len(data) // 2])


def copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)  # the same mtime: the results' video identity is the same
    return dst


def progress(proc) -> list:
    # ffmpeg's messages name a decoder by its address in memory, different on every run.
    text = [re.sub(r"0x[0-9a-f]+", "0x?", ln) for ln in proc.stdout.splitlines()]
    return sorted(ln for ln in text if ln.startswith(SAME_LINES))


def results(root: Path) -> dict:
    """Every file under ``root`` -> its bytes, JSONs without their timings."""
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.name.endswith(".scenes.json"):
            doc = load_json(path)
            doc.pop("timings")
            out[path.relative_to(root).as_posix()] = doc
        elif path.suffix == ".csv":
            out[path.relative_to(root).as_posix()] = path.read_bytes()
        else:
            out[path.relative_to(root).as_posix()] = path.stat().st_size
    return out


def ray_runs_left() -> list:
    return [p.info["pid"] for p in psutil.process_iter(["pid", "cmdline"])
            if any("step3-ray-" in part for part in (p.info["cmdline"] or []))]


@pytest.fixture(scope="module")
def big_clip(tmp_path_factory) -> Path:
    """400 frames of 1280x720: its decoding lasts long enough to be caught at it."""
    clip = tmp_path_factory.mktemp("big") / "big.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25:duration=8", "-f", "lavfi", "-i",
           "mandelbrot=size=1280x720:rate=25,trim=duration=8", "-filter_complex",
           "[0][1]concat=n=2:v=1:a=0,format=yuv420p", "-c:v", "libx264", "-preset", "ultrafast", str(clip))
    return clip


@pytest.fixture(scope="module")
def pair(tmp_path_factory, sample_video, media, big_clip):
    """The same batch run by the local executor and by a local Ray instance
    started by the run, both at once: each waits part of its time (the Ray
    instance's start, the model's load). On 2 cores: 107 s, against 117 s
    one after the other (one run each, the module's longest fixture)."""
    out, roots = {}, {}
    temp_before = set(os.listdir(tempfile.gettempdir()))
    for executor in ("local", "ray"):
        root = roots[executor] = tmp_path_factory.mktemp(executor)
        copy(sample_video, root / "demo" / "sample.mp4")
        copy(media["cuts"], root / "generated" / "cuts.MP4")
        copy(big_clip, root / "generated" / "big.mp4")
        add_bad_files(root / "bad", media["cuts"])
    logs = {e: tmp_path_factory.mktemp("logs") for e in roots}
    with ThreadPoolExecutor(max_workers=2) as pool:
        procs = {e: pool.submit(run_step3, "--input-dir", roots[e], "--log-dir", logs[e], "--executor", e,
                                env_extra=QUIET) for e in roots}
        for executor, proc in procs.items():
            out[executor] = {"root": roots[executor], "proc": proc.result()}
    out["temp_left"] = sorted(n for n in set(os.listdir(tempfile.gettempdir())) - temp_before
                              if n.startswith("step3-ray-"))
    return out


def test_a_local_ray_instance_gives_the_local_executor_s_lines(pair):
    local, ray = pair["local"]["proc"], pair["ray"]["proc"]
    assert local.returncode == ray.returncode == 1, ray.stdout + ray.stderr
    assert "Traceback" not in ray.stdout + ray.stderr
    assert progress(ray) == progress(local)
    assert "SUMMARY: 3/7 succeeded, 4 failed, 0 skipped" in ray.stdout
    size = lines(ray, "INFO: a local Ray instance started for this run: ")
    assert len(size) == 1 and re.search(r": 1 node\(s\), \d+ CPU\(s\), 0 GPU\(s\); 1 model actor\(s\), "
                                        r"\d+ decoding task\(s\) at once$", size[0]), size


def test_a_local_ray_instance_gives_the_same_results(pair):
    local, ray = results(pair["local"]["root"]), results(pair["ray"]["root"])
    assert sorted(local) == sorted(ray)  # nothing else written into the projects folder
    assert {k for k in local if k.endswith(".csv")} == {"demo/sample.csv", "generated/cuts.csv", "generated/big.csv"}
    for name in local:
        assert local[name] == ray[name], name
    assert load_json(pair["ray"]["root"] / "demo" / "sample.scenes.json")["scene_count"] == 108


def test_a_ray_client_address_is_one_clear_error(media, tmp_path):
    """ray:// is refused before anything starts, in one line that says why."""
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copyfile(media["short"], folder / "short.mp4")
    proc = run_step3("--input-dir", folder, "--log-dir", tmp_path / "logs", "--executor", "ray",
                     "--ray-address", "ray://127.0.0.1:10001")
    errors = lines(proc, "ERROR:")
    assert proc.returncode == 2 and len(errors) == 1, proc.stdout + proc.stderr
    assert "Ray Client (ray://) cannot carry" in errors[0] and "ray_address auto" in errors[0]
    assert not list(folder.glob("*.csv"))


def test_the_local_instance_is_gone_after_the_run(pair):
    assert pair["temp_left"] == []
    assert ray_runs_left() == []


# -- a two-node cluster on this machine ------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_processes(base: Path) -> list:
    """The cluster's processes: those naming its folders, and their children (workers, agents)."""
    found = {}
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(str(base) in part for part in (p.info["cmdline"] or [])):
                found[p.pid] = p
                for child in p.children(recursive=True):
                    found[child.pid] = child
        except psutil.Error:
            pass
    return list(found.values())


def stop(processes: list) -> None:
    """Ends them at once (a test cluster has nothing to save)."""
    for p in processes:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(processes, timeout=10)


def start_cluster(base: Path, workers: dict, worker_prefix=()) -> dict:
    """A head of 2 CPUs (the model actor and a decoder) and worker nodes
    ``{folder: CPUs}``, each with its files under ``base``, behind Ray's token
    authentication: the address and the environment that joins it."""
    token = base / "token"
    token.write_text(secrets.token_hex(32))
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token), **QUIET)
    port = free_port()
    common = ["--num-gpus=0", "--disable-usage-stats", "--object-store-memory=100000000"]
    subprocess.run([str(RAY), "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                    f"--temp-dir={base / 'h'}", *common], env=env, check=True, capture_output=True, timeout=120)
    for folder, cpus in workers.items():
        subprocess.run([*worker_prefix, str(RAY), "start", f"--address=127.0.0.1:{port}", f"--num-cpus={cpus}",
                        f"--temp-dir={base / folder}", *common], env=env, check=True, capture_output=True,
                       timeout=120)
    return {"address": f"127.0.0.1:{port}", "env": {k: env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")},
            "base": base}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Head: 2 CPUs (the model actor and a decoder); worker: 1 CPU (a decoder).
    As root, the worker node runs without the capabilities that override file
    permissions: it cannot read what only another user may, the head can."""
    base = tmp_path_factory.mktemp("rc")
    try:
        yield start_cluster(base, {"w": 1}, DROP_FILE_OVERRIDES if os.geteuid() == 0 else ())
    finally:
        stop(node_processes(base))


def start_on_cluster(cluster, folder: Path, logs: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", **QUIET, **cluster["env"])
    env.pop("DRY_RUN", None)
    return subprocess.Popen([sys.executable, str(SCRIPT), "--input-dir", str(folder), "--log-dir", str(logs),
                             "--executor", "ray", "--ray-address", cluster["address"]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


class Watch:
    """A running STEP3 and its output lines, read as they come."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.out, self.err = proc, [], []
        self._readers = [threading.Thread(target=lambda s=s, d=d: d.extend(s), daemon=True)
                         for s, d in ((proc.stdout, self.out), (proc.stderr, self.err))]
        for r in self._readers:
            r.start()

    def seen(self, prefix: str) -> bool:
        return any(ln.startswith(prefix) for ln in list(self.out))

    def wait(self, timeout: float = 300) -> str:
        self.proc.wait(timeout=timeout)
        for r in self._readers:
            r.join(timeout=10)
        return "".join(self.out)


def run_on_cluster(cluster, folder: Path, logs: Path) -> subprocess.CompletedProcess:
    env = dict(QUIET, **cluster["env"])
    return run_step3("--input-dir", folder, "--log-dir", logs, "--executor", "ray", "--ray-address",
                     cluster["address"], env_extra=env)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a file only the head node can read")
def test_two_nodes_same_results_and_a_video_one_node_cannot_read(cluster, pair, media, tmp_path):
    folder = tmp_path / "p"
    copy(media["cuts"], folder / "generated" / "cuts.MP4")
    locked = copy(media["short"], folder / "locked.mp4")
    os.chown(locked, 65534, 65534)
    locked.chmod(0o600)  # the head (root, with its capabilities) reads it; the worker node cannot
    proc = run_on_cluster(cluster, folder, tmp_path / "logs")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert lines(proc, "INFO: Ray cluster at ") == [
        f"INFO: Ray cluster at {cluster['address']}: 2 node(s), 3 CPU(s), 0 GPU(s); 1 model actor(s), "
        f"2 decoding task(s) at once"]
    failed = lines(proc, "FAILED:")
    assert len(failed) == 1 and re.fullmatch(
        r"FAILED: \d/2: locked\.mp4: cannot be read on node [0-9.]+: permission denied \(file not readable\); "
        r"every node must see the videos at the same path \(a shared file system\)", failed[0]), failed
    local = pair["local"]["root"] / "generated"
    assert (folder / "generated" / "cuts.csv").read_bytes() == (local / "cuts.csv").read_bytes()
    got, want = (load_json(f / "cuts.scenes.json") for f in (folder / "generated", local))
    got.pop("timings"), want.pop("timings")
    assert got == want
    assert sorted(p.name for p in folder.rglob("*")) == ["cuts.MP4", "cuts.csv", "cuts.scenes.json", "generated",
                                                         "locked.mp4"]


def test_a_bad_weights_file_is_the_local_executor_s_error(cluster, media, tmp_path):
    """The model actors learn it while loading (the decoding does not wait for
    them): the same one ERROR line and exit code, nothing written."""
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"garbage, not a checkpoint")
    got = {}
    for executor in ("local", "ray"):
        copy(media["cuts"], tmp_path / executor / "cuts.mp4")
        more = ("--ray-address", cluster["address"]) if executor == "ray" else ()
        got[executor] = run_step3("--input-dir", tmp_path / executor, "--log-dir", tmp_path / "logs",
                                  "--weights-path", weights, "--executor", executor, *more,
                                  env_extra=dict(QUIET, **cluster["env"]))
        assert got[executor].returncode == 2, got[executor].stdout + got[executor].stderr
        assert "Traceback" not in got[executor].stdout + got[executor].stderr
        assert sorted(p.name for p in (tmp_path / executor).iterdir()) == ["cuts.mp4"]
    errors = lines(got["ray"], "ERROR:")
    assert errors == lines(got["local"], "ERROR:") and len(errors) == 1, got["ray"].stdout
    assert "is not a readable state dict" in errors[0]


def kill_mid_run(cluster, pair, big_clip, tmp_path, name, ready) -> str:
    """Runs the big clip on the cluster, kills the worker process called
    ``name`` once ``ready(process, watch)``, and checks that the results are
    the local executor's."""
    folder = tmp_path / "p"
    copy(big_clip, folder / "generated" / "big.mp4")
    watch = Watch(start_on_cluster(cluster, folder, tmp_path / "logs"))
    killed, candidates = None, []
    deadline = time.monotonic() + 240
    while killed is None and watch.proc.poll() is None and time.monotonic() < deadline:
        if not candidates:  # looked for once it exists; then watched closely
            candidates = [p for p in node_processes(cluster["base"]) if _name(p).startswith(name)]
        for p in candidates:
            try:
                if _name(p).startswith(name) and ready(p, watch):
                    p.kill()
                    killed = p.pid
                    break
            except psutil.Error:
                pass
        else:
            candidates = [p for p in candidates if _name(p).startswith(name)]
        time.sleep(0.01)
    text = watch.wait()
    assert killed is not None, text
    assert watch.proc.returncode == 0, text + "".join(watch.err)
    local = pair["local"]["root"] / "generated"
    assert (folder / "generated" / "big.csv").read_bytes() == (local / "big.csv").read_bytes()
    got, want = (load_json(f / "big.scenes.json") for f in (folder / "generated", local))
    got.pop("timings"), want.pop("timings")
    assert got == want
    return text


def test_a_killed_decoding_worker_is_retried_with_the_same_results(cluster, pair, big_clip, tmp_path):
    # Killed while its ffmpeg decodes.
    text = kill_mid_run(cluster, pair, big_clip, tmp_path, "ray::decode",
                        lambda p, watch: any(c.name() == "ffmpeg" for c in p.children()))
    assert "SUMMARY: 1/1 succeeded, 0 failed, 0 skipped" in text


def test_a_killed_model_actor_is_restarted_with_the_same_results(cluster, pair, big_clip, tmp_path):
    # Killed once it has predicted its first window (of 8).
    text = kill_mid_run(cluster, pair, big_clip, tmp_path, "ray::ModelActor",
                        lambda p, watch: watch.seen("FRAMES: 1/1: "))
    assert "WARNING: model actor 1 was restarted (its process ended): its batches were redone" in text
    assert "SUMMARY: 1/1 succeeded, 0 failed, 0 skipped" in text


def cancel_mid_run(watch: Watch, run_processes) -> list:
    """SIGTERM to the driver once it predicts; the Ray processes of the run that are still there after 30 s."""
    deadline = time.monotonic() + 240
    while not watch.seen("FRAMES: 1/1: ") and watch.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    ours = run_processes()
    assert ours, "expected the run's Ray processes"
    watch.proc.send_signal(signal.SIGTERM)
    watch.wait(timeout=60)
    assert watch.proc.returncode == 128 + signal.SIGTERM, "".join(watch.out + watch.err)
    _, alive = psutil.wait_procs(ours, timeout=30)
    left = [p.pid for p in alive]
    stop(alive)
    return left


def test_cancel_ends_the_run_s_tasks_and_actors_on_the_cluster(cluster, big_clip, tmp_path):
    before = {p.pid for p in node_processes(cluster["base"])}
    copy(big_clip, tmp_path / "p" / "big.mp4")
    watch = Watch(start_on_cluster(cluster, tmp_path / "p", tmp_path / "logs"))

    def workers_of_the_run():
        return [p for p in node_processes(cluster["base"]) if p.pid not in before and _name(p).startswith("ray::")]
    assert cancel_mid_run(watch, workers_of_the_run) == []
    assert not (tmp_path / "p" / "big.csv").exists()


def _name(p) -> str:
    try:
        return (p.cmdline() or [""])[0]
    except psutil.Error:
        return ""


def test_cancel_shuts_the_local_instance_down(big_clip, tmp_path):
    copy(big_clip, tmp_path / "p" / "big.mp4")
    env = dict(os.environ, PYTHONUNBUFFERED="1", **QUIET)
    env.pop("DRY_RUN", None)
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--input-dir", str(tmp_path / "p"), "--log-dir",
                             str(tmp_path / "logs"), "--executor", "ray"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    watch = Watch(proc)
    driver = psutil.Process(proc.pid)
    assert cancel_mid_run(watch, lambda: driver.children(recursive=True)) == []
    assert ray_runs_left() == []


@pytest.fixture
def three_nodes():
    """A cluster of its own for the test that loses a node: a head (the model
    actor and one decoder) and two 1-CPU worker nodes, w1 and w2. (A short
    folder: Ray's sockets live under it, and a socket's path has 107 bytes.)"""
    base = Path(tempfile.mkdtemp(prefix="rc3-"))
    try:
        yield start_cluster(base, {"w1": 1, "w2": 1})
    finally:
        stop(node_processes(base))
        shutil.rmtree(base, ignore_errors=True)


def test_a_node_lost_mid_run_loses_nothing(three_nodes, pair, big_clip, tmp_path):
    """Worker node w2 dies whole (its raylet, agents and workers) while one of
    its decoding tasks runs: its work is redone elsewhere, every video comes
    out as the local executor's, and no result is half-written."""
    folder = tmp_path / "p"
    for i in range(4):  # more tasks than decoding slots: every node decodes
        copy(big_clip, folder / f"big{i}.mp4")
    watch = Watch(start_on_cluster(three_nodes, folder, tmp_path / "logs"))
    node, lost = three_nodes["base"] / "w2", False
    deadline = time.monotonic() + 240
    while not lost and watch.proc.poll() is None and time.monotonic() < deadline:
        processes = node_processes(node)
        for p in processes:
            try:
                if _name(p).startswith("ray::decode") and any(c.name() == "ffmpeg" for c in p.children()):
                    stop(processes)
                    lost = True
                    break
            except psutil.Error:
                pass
        time.sleep(0.05)
    text = watch.wait(timeout=400)
    assert lost, text
    assert watch.proc.returncode == 0, text + "".join(watch.err)
    assert "SUMMARY: 4/4 succeeded, 0 failed, 0 skipped" in text
    local = pair["local"]["root"] / "generated"
    want = load_json(local / "big.scenes.json")
    for i in range(4):
        assert (folder / f"big{i}.csv").read_bytes() == (local / "big.csv").read_bytes()
        got = load_json(folder / f"big{i}.scenes.json")
        assert got["complete"] and got["scenes"] == want["scenes"] and got["predictions"] == want["predictions"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"big{i}{ext}" for i in range(4) for ext in (".mp4", ".csv", ".scenes.json")])


def test_the_dashboard_s_system_panel_shows_the_cluster(cluster):
    """dashboard/system.py (loaded from its file: the dashboard's package needs Flask)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("dashboard_system", REPO / "dashboard" / "system.py")
    system = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(system)
    assert system.RayProbe(REPO, environ={}).state() is None  # the shipped config names no cluster
    probe = system.RayProbe(REPO, environ=dict(os.environ, RAY_ADDRESS=cluster["address"], **cluster["env"]))
    assert probe.state() == {"address": cluster["address"], "nodes": None, "error": None}  # asked, not waited for
    deadline = time.monotonic() + 60
    while probe.state()["nodes"] is None and probe.state()["error"] is None and time.monotonic() < deadline:
        time.sleep(0.2)
    state = probe.state()
    assert state["error"] is None, state
    alive = [n for n in state["nodes"] if n["alive"]]
    assert (len(alive), sum(n["cpus"] for n in alive), sum(n["gpus"] for n in alive)) == (2, 3, 0)



@pytest.mark.gpu
def test_on_a_gpu_the_model_actor_gives_the_local_executor_s_scenes(tmp_path, sample_video, media):
    """Opt-in (--run-gpu): one GPU actor of a local Ray instance against the local executor on the GPU."""
    import torch
    assert torch.cuda.is_available(), "--run-gpu was given but PyTorch sees no CUDA device"
    for executor in ("local", "ray"):
        copy(sample_video, tmp_path / executor / "sample.mp4")
        copy(media["cuts"], tmp_path / executor / "cuts.mp4")
        proc = run_step3("--input-dir", tmp_path / executor, "--log-dir", tmp_path / "logs", "--device", "cuda",
                         "--executor", executor, env_extra=QUIET)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        if executor == "ray":
            assert re.search(r"\d+ GPU\(s\); (\d+) model actor\(s\)", proc.stdout), proc.stdout
    for name in ("sample", "cuts"):
        a, b = (load_json(tmp_path / e / f"{name}.scenes.json") for e in ("local", "ray"))
        assert a["device"] == b["device"] and a["device"].startswith("cuda")
        # Batches group other windows on the two executors: cuDNN may sum in another order.
        for head in ("single_frame", "all_frames"):
            assert np.abs(np.array(a["predictions"][head]) - np.array(b["predictions"][head])).max() <= 1e-4
        assert (tmp_path / "local" / f"{name}.csv").read_bytes() == (tmp_path / "ray" / f"{name}.csv").read_bytes()
