"""Where an NVDEC session's time goes (issue 11): decode loops with more and
more of the frame source's work, threads, whole videos. Run on the GPU machine:

    python bench/nvdec_profile.py [--threads 8] [--copies 8]

Prints one line per variant: frames/s and, per frame, the seconds spent in
Decode, in the DLPack import and copy, in stream synchronisation and in the
conversion (summed over threads, so the sum can exceed the wall time).
"""
import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow_scripts" / "step3"))
from benchlib import ffmpeg  # noqa: E402
from shots.frames.swscale_exact import scale_plan  # noqa: E402
from shots.frames.yuv_to_rgb import YuvToRgb, split_semiplanar  # noqa: E402
from shots.model import weights as assets  # noqa: E402

import PyNvVideoCodec as nvc  # noqa: E402

BATCH = 32


class Times:
    def __init__(self):
        self.lock = threading.Lock()
        self.parts = {}
        self.frames = 0

    def add(self, frames, **parts):
        with self.lock:
            self.frames += frames
            for k, v in parts.items():
                self.parts[k] = self.parts.get(k, 0.0) + v


def loop(path, mode, times, out=None, convert=None, hw=None):
    t_dec = t_copy = t_sync = t_conv = 0.0
    n = 0
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        dmx = nvc.CreateDemuxer(filename=path)
        kw = dict(gpuid=0, codec=dmx.GetNvCodecId(), usedevicememory=True)
        if mode in ("own_stream", "own_stream_conv"):
            kw["cudastream"] = stream.cuda_stream
        dec = nvc.CreateDecoder(**kw)
        h, w = hw
        batch = torch.empty((BATCH, h * 3 // 2, w), dtype=torch.uint8, device="cuda")
        filled = 0
        kept = []

        def flush():
            nonlocal filled, t_conv
            if not filled:
                return
            t = time.perf_counter()
            y, u, v = split_semiplanar(batch[:filled], h, 0)
            rgb = convert(y, u, v)
            torch.cuda.current_stream().synchronize()
            if out is not None:
                kept.append(rgb.cpu())
            t_conv += time.perf_counter() - t
            filled = 0

        for pkt in dmx:
            t = time.perf_counter()
            frames = dec.Decode(pkt)
            t_dec += time.perf_counter() - t
            for f in frames:
                n += 1
                if mode == "bare":
                    continue
                t = time.perf_counter()
                s = torch.from_dlpack(f)
                if mode != "dlpack":
                    batch[filled].copy_(s)
                    filled += 1
                t_copy += time.perf_counter() - t
                if mode in ("copy_sync", "conv"):
                    t = time.perf_counter()
                    torch.cuda.current_stream().synchronize()
                    t_sync += time.perf_counter() - t
                if filled == BATCH:
                    if mode in ("conv", "own_stream_conv"):
                        flush()
                    else:
                        filled = 0
        if mode in ("conv", "own_stream_conv"):
            flush()
        torch.cuda.current_stream().synchronize()
    times.add(n, decode=t_dec, copy=t_copy, sync=t_sync, conv=t_conv)
    if out is not None:
        out.append(torch.cat(kept) if kept else None)


def threaded(path, times, convert, hw):
    """PyNvVideoCodec's ThreadedDecoder (decodes in its own C++ thread)."""
    t_dec = t_copy = t_conv = 0.0
    n = 0
    h, w = hw
    with torch.cuda.stream(torch.cuda.Stream()):
        d = nvc.ThreadedDecoder(path, buffer_size=BATCH, gpu_id=0, use_device_memory=True)
        batch = torch.empty((BATCH, h * 3 // 2, w), dtype=torch.uint8, device="cuda")
        while True:
            t = time.perf_counter()
            frames = d.get_batch_frames(BATCH)
            t_dec += time.perf_counter() - t
            if not frames:
                break
            t = time.perf_counter()
            for i, f in enumerate(frames):
                batch[i].copy_(torch.from_dlpack(f))
            t_copy += time.perf_counter() - t
            t = time.perf_counter()
            y, u, v = split_semiplanar(batch[:len(frames)], h, 0)
            convert(y, u, v)
            torch.cuda.current_stream().synchronize()
            t_conv += time.perf_counter() - t
            n += len(frames)
        d.end()
    times.add(n, decode=t_dec, copy=t_copy, conv=t_conv)


def run(label, videos, threads, target, **kw):
    times = Times()
    queue = list(videos)
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                path = queue.pop(0)
            target(path, times=times, **kw)

    start = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - start
    per = " ".join(f"{k} {v / max(1, times.frames) * 1e6:.0f}us" for k, v in times.parts.items())
    print(f"{label:40s} threads {threads:2d}: {times.frames} frames {wall:6.1f} s = {times.frames / wall:8,.0f} "
          f"frames/s | per frame (thread-summed): {per}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--copies", type=int, default=8)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nvprof-"))
    sample = assets.sample_video_path()
    hd = work / "1080p.mp4"
    t = time.perf_counter()
    ffmpeg("-i", sample, "-vf", "scale=1920:1080", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-an",
           hd)
    print(f"encoded in {time.perf_counter() - t:.0f} s", flush=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    conv_hd = YuvToRgb(scale_plan(1920, 1080, "yuv420p", None, None), "cuda")
    conv_small = YuvToRgb(scale_plan(160, 90, "yuv420p", None, None), "cuda")
    vids = [str(hd)] * args.copies
    T = args.threads
    hw = (1080, 1920)
    run("bare", vids, T, loop, mode="bare", hw=hw)
    run("bare", vids, 14, loop, mode="bare", hw=hw)
    run("dlpack", vids, T, loop, mode="dlpack", hw=hw)
    run("dlpack+copy (no sync)", vids, T, loop, mode="copy", hw=hw)
    run("dlpack+copy+sync per frame", vids, T, loop, mode="copy_sync", hw=hw)
    run("+conversion per 32 (today's source)", vids, T, loop, mode="conv", convert=conv_hd, hw=hw)
    run("decoder on our stream, no sync, +conv", vids, T, loop, mode="own_stream_conv", convert=conv_hd, hw=hw)
    run("decoder on our stream, no sync, +conv", vids, 14, loop, mode="own_stream_conv", convert=conv_hd, hw=hw)
    run("ThreadedDecoder batches of 32 +conv", vids, T, threaded, convert=conv_hd, hw=hw)
    # exactness of the no-sync variant: the same frames as the synced one
    a, b = [], []
    loop(str(hd), "conv", Times(), out=a, convert=conv_hd, hw=hw)
    loop(str(hd), "own_stream_conv", Times(), out=b, convert=conv_hd, hw=hw)
    print("own stream frames identical to synced:", bool(torch.equal(a[0], b[0])), tuple(a[0].shape), flush=True)
    small = [str(sample)] * args.copies
    hw = (90, 160)
    run("160x90 bare", small, 1, loop, mode="bare", hw=hw)
    run("160x90 bare", small, T, loop, mode="bare", hw=hw)
    run("160x90 today's (sync per frame) +conv", small, T, loop, mode="conv", convert=conv_small, hw=hw)
    run("160x90 own stream +conv", small, T, loop, mode="own_stream_conv", convert=conv_small, hw=hw)
    run("160x90 ThreadedDecoder +conv", small, T, threaded, convert=conv_small, hw=hw)
    # The source as it is today, whole videos, 8 sessions
    sys.argv = [sys.argv[0]]
    from bench_nvdec import pure_nvdec
    pure_nvdec([hd] * args.copies, T)
    os.system(f"rm -rf {work}")


if __name__ == "__main__":
    main()
