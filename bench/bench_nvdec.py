"""STEP3 with NVDEC against the same engine decoding on the CPU, on one GPU machine.

    python bench/bench_nvdec.py hd        # 12 full-HD H.264 videos, decoder cpu vs nvdec
    python bench/bench_nvdec.py hd --copies 12 --long 3 --variants cpu,nvdec

The videos: the sample re-encoded to 1080p (``-preset veryfast -crf 20``, as
in issue 11), copied; ``--long`` of them are that encode looped three times
(636 s, over 10 minutes). Each variant runs the real script (``--num-workers
auto --mixed-precision --device cuda``) on its own copy of the folder; then
every video's scenes and probabilities are compared with the first
variant's. Prints a markdown table (bench/RESULTS.md). The mixed 12-video
batch is bench_step3_gpu.py's: ``e2e --variants auto/fp16/decoder=cpu,auto/fp16/decoder=nvdec``.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_step3_gpu import GpuBusy
from nvdec_trace import summarize
from benchlib import SCRIPT, CpuBusy, ffmpeg, frame_count, machine, run_measured, table

from shots.model import weights as assets  # noqa: E402


def make_videos(folder: Path, copies: int, long: int):
    src = folder / "src"
    src.mkdir(parents=True)
    encode = src / "1080p.mp4"
    t = time.perf_counter()
    ffmpeg("-i", assets.sample_video_path(), "-vf", "scale=1920:1080", "-c:v", "libx264", "-preset", "veryfast",
           "-crf", "20", "-an", encode)
    looped = src / "1080p_x3.mp4"
    ffmpeg("-stream_loop", 2, "-i", encode, "-c", "copy", looped)
    vids = folder / "videos"
    vids.mkdir()
    for i in range(copies):
        shutil.copyfile(looped if i < long else encode, vids / f"hd{i:02d}{'_long' if i < long else ''}.mp4")
    print(f"encoded in {time.perf_counter() - t:.0f} s", flush=True)
    return sorted(vids.iterdir())


def pure_nvdec(videos, sessions):
    """Frames/s of the NVDEC source alone (decode, exact conversion, frames
    copied to the host), whole videos, longest first."""
    from shots.frames.messages import DecodeTask, FramesReady, TaskFailed
    from shots.frames.nvdec_source import NvdecFrameSource
    source = NvdecFrameSource(sessions)
    tasks = [DecodeTask(i, *source.plan(v, False)[0:1], source.plan(v, False)[1][0]) for i, v in enumerate(videos)]
    tasks.sort(key=lambda t: -(t.info.expected_frames or 0))
    start, frames, running = time.perf_counter(), 0, 0
    with GpuBusy() as gpu:
        while tasks or running:
            for _ in range(source.idle(sessions)):
                if tasks:
                    source.submit(tasks.pop(0))
                    running += 1
            for msg in source.poll(0.01):
                if isinstance(msg, FramesReady):
                    frames += len(msg.chunk.take())
                else:
                    running -= 1
                    if isinstance(msg, TaskFailed):
                        print("failed:", msg.cause)
    wall = time.perf_counter() - start
    source.close()
    print(f"pure NVDEC, {sessions} sessions: {frames} frames in {wall:.1f} s = {frames / wall:,.0f} frames/s, "
          f"GPU busy {gpu.mean:.0%}", flush=True)


def compare(base: Path, other: Path):
    """(videos with the same CSV, largest |dp| of the single-frame head, frame sources)."""
    same, worst, sources = 0, 0.0, set()
    for a in sorted(base.glob("*.scenes.json")):
        b = other / a.name
        if not b.exists():
            continue
        da, db = json.loads(a.read_text()), json.loads(b.read_text())
        csv = a.name.replace(".scenes.json", ".csv")
        same += (base / csv).read_bytes() == (other / csv).read_bytes()
        pa, pb = (np.array(d["predictions"]["single_frame"]) for d in (da, db))
        worst = max(worst, float(np.abs(pa - pb).max()) if len(pa) == len(pb) else float("inf"))
        fs = db.get("frame_source", "?")
        sources.update(fs if isinstance(fs, list) else [fs])
    return same, worst, sorted(sources)


def hd_bench(copies: int, long: int, variants, pure_sessions=(), trace=False):
    work = Path(tempfile.mkdtemp(prefix="step3-nvdec-"))
    videos = make_videos(work, copies, long)
    total = sum(frame_count(v) for v in videos)
    print(f"{len(videos)} videos, {total} frames", flush=True)
    for sessions in pure_sessions:
        pure_nvdec(videos, sessions)
    rows, walls, dirs = [], {}, {}
    for variant in variants:
        # "nvdec:8": with 8 ffmpeg decoders beside NVDEC; "nvdec+switch=0.001+batch=64": nvdec_trace.py's
        # knobs; "nvdec+torchscript": a flag of the script (--torchscript)
        base, *knobs = variant.split("+")
        decoder, _, workers = base.partition(":")
        flags = [f"--{k}" for k in knobs if "=" not in k]
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   **{f"STEP3_TRACE_{k.split('=')[0].upper()}": k.split("=")[1] for k in knobs if "=" in k})
        out_dir = work / f"run_{variant.replace(':', '_').replace('+', '_').replace('=', '-')}"
        shutil.copytree(work / "videos", out_dir)
        trace_file = work / f"trace_{out_dir.name[4:]}.json"
        script = [str(Path(__file__).with_name("nvdec_trace.py")), str(trace_file)] \
            if trace and decoder == "nvdec" else [str(SCRIPT)]
        with CpuBusy() as cpu, GpuBusy() as gpu:
            wall, peak, _, out, rc = run_measured(
                [sys.executable, *script, "--input-dir", str(out_dir), "--log-dir", str(work / "logs"),
                 "--device", "cuda", "--num-workers", workers or "auto", "--mixed-precision", "--decoder", decoder,
                 *flags],
                env=env)
        walls[variant], dirs[variant] = wall, out_dir
        first = [ln for ln in out.splitlines() if "first result after" in ln]
        summary = [ln for ln in out.splitlines() if ln.startswith("SUMMARY")]
        same, worst, sources = compare(dirs[variants[0]], out_dir)
        rows.append([f"decoder {variant}", f"{wall:.1f}", f"{total / wall:,.0f}",
                     f"{walls[variants[0]] / wall:.2f}x", f"{cpu.share:.0%}", f"{gpu.mean:.0%}", f"{peak:,.0f}",
                     f"{same}/{len(videos)}", f"{worst:.1e}", "/".join(sources),
                     summary[0][9:] if summary else f"rc {rc}", first[0][6:].split(";")[0] if first else ""])
        print(rows[-1], flush=True)
        if trace_file.exists():
            print("\n".join(summarize(trace_file)), flush=True)
            if os.environ.get("OUT"):  # the device tool's folder that comes back
                shutil.copy(trace_file, os.environ["OUT"])
        if rc != 0:
            print(out[-3000:])
        print("\n".join(ln for ln in out.splitlines() if "decoder" in ln.lower() and "CONFIG" not in ln)[:1500],
              flush=True)
    print(table(["run", "wall s", "frames/s", f"speed-up vs {variants[0]}", "cores busy", "GPU busy",
                 "peak RSS MiB", "same CSV", "max |dp|", "frame source", "result", "first result"], rows))
    shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("part", choices=["hd"])
    parser.add_argument("--copies", type=int, default=12)
    parser.add_argument("--long", type=int, default=3, help="of them, the 1080p encode looped 3 times")
    parser.add_argument("--variants", default="cpu,nvdec",
                        help="decoder values, the first is the reference; nvdec:8 = with 8 ffmpeg decoders; "
                             "nvdec+torchscript = with the flag --torchscript")
    parser.add_argument("--trace", action="store_true", help="time the NVDEC runs' tasks by side (nvdec_trace.py)")
    parser.add_argument("--pure", default="", help="NVDEC session counts to measure the source alone with (4,8)")
    args = parser.parse_args()
    print(machine(), flush=True)
    hd_bench(args.copies, args.long, args.variants.split(","), [int(n) for n in args.pure.split(",") if n],
             args.trace)


if __name__ == "__main__":
    main()
