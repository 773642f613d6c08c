"""Second look (issue 11): CUDA contexts, batched copies, the conversion alone."""
import ctypes
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow_scripts" / "step3"))
from benchlib import ffmpeg  # noqa: E402
from shots.frames.ffmpeg_reader import ffmpeg_command  # noqa: E402
from shots.frames.swscale_exact import scale_plan  # noqa: E402
from shots.frames.yuv_to_rgb import YuvToRgb, split_semiplanar  # noqa: E402
from shots.model import weights as assets  # noqa: E402
import subprocess  # noqa: E402
import PyNvVideoCodec as nvc  # noqa: E402
from nvdec_profile import Times, run  # noqa: E402

cuda = ctypes.CDLL("libcuda.so.1")
B = 32


def current_ctx():
    c = ctypes.c_void_p()
    cuda.cuCtxGetCurrent(ctypes.byref(c))
    return c.value or 0


def primary_ctx():
    torch.cuda.init()
    torch.zeros(1, device="cuda")
    return current_ctx()


def loop(path, times, mode, convert, hw, ctx, out=None):
    t_dec = t_copy = t_conv = 0.0
    n = 0
    h, w = hw
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        dmx = nvc.CreateDemuxer(filename=path)
        kw = dict(gpuid=0, codec=dmx.GetNvCodecId(), usedevicememory=True)
        if "ctx" in mode:
            kw.update(cudacontext=ctx, cudastream=stream.cuda_stream)
        dec = nvc.CreateDecoder(**kw)
        batch = torch.empty((B, h * 3 // 2, w), dtype=torch.uint8, device="cuda")
        filled = 0
        kept = []
        for pkt in dmx:
            t = time.perf_counter()
            frames = dec.Decode(pkt)
            t_dec += time.perf_counter() - t
            if not frames:
                continue
            t = time.perf_counter()
            for f in frames:
                batch[filled].copy_(torch.from_dlpack(f))
                filled += 1
                n += 1
                if filled == B:
                    t_copy += time.perf_counter() - t
                    t = time.perf_counter()
                    y, u, v = split_semiplanar(batch, h, 0)
                    rgb = convert(y, u, v)
                    if out is not None:
                        kept.append(rgb.cpu())
                    t_conv += time.perf_counter() - t
                    t = time.perf_counter()
                    filled = 0
            if "ctx" not in mode:
                stream.synchronize()
            t_copy += time.perf_counter() - t
        if filled:
            y, u, v = split_semiplanar(batch[:filled], h, 0)
            rgb = convert(y, u, v)
            if out is not None:
                kept.append(rgb.cpu())
        stream.synchronize()
    times.add(n, decode=t_dec, copy=t_copy, conv=t_conv)
    if out is not None:
        out.append(torch.cat(kept))


def threaded(path, times, convert, hw, ctx, mode="", out=None):
    t_dec = t_copy = t_conv = 0.0
    n = 0
    h, w = hw
    stream = torch.cuda.Stream()
    kept = []
    with torch.cuda.stream(stream):
        kw = dict(buffer_size=B, gpu_id=0, use_device_memory=True)
        if "ctx" in mode:
            kw.update(cuda_context=ctx, cuda_stream=stream.cuda_stream)
        d = nvc.ThreadedDecoder(path, **kw)
        batch = torch.empty((B, h * 3 // 2, w), dtype=torch.uint8, device="cuda")
        pts = []
        while True:
            t = time.perf_counter()
            frames = d.get_batch_frames(B)
            t_dec += time.perf_counter() - t
            if not frames:
                break
            t = time.perf_counter()
            k = len(frames)
            torch.stack([torch.from_dlpack(f) for f in frames], out=batch[:k])
            pts += [f.getPTS() for f in frames]
            stream.synchronize()
            t_copy += time.perf_counter() - t
            t = time.perf_counter()
            y, u, v = split_semiplanar(batch[:k], h, 0)
            rgb = convert(y, u, v)
            if out is not None:
                kept.append(rgb.cpu())
            t_conv += time.perf_counter() - t
            n += k
        stream.synchronize()
        d.end()
    times.add(n, decode=t_dec, copy=t_copy, conv=t_conv)
    if out is not None:
        out.append((torch.cat(kept), pts))


def conv_only(path, times, convert, hw, reps):
    h, w = hw
    x = torch.randint(0, 255, (B, h * 3 // 2, w), dtype=torch.uint8, device="cuda")
    t = time.perf_counter()
    with torch.cuda.stream(torch.cuda.Stream()):
        for _ in range(reps):
            y, u, v = split_semiplanar(x, h, 0)
            convert(y, u, v)
            torch.cuda.current_stream().synchronize()
    times.add(B * reps, conv=time.perf_counter() - t)


def main():
    work = Path(tempfile.mkdtemp(prefix="nvprof-"))
    hd = work / "1080p.mp4"
    ffmpeg("-i", assets.sample_video_path(), "-vf", "scale=1920:1080", "-c:v", "libx264", "-preset", "veryfast",
           "-crf", "20", "-an", "-t", "120", hd)
    torch.backends.cuda.matmul.allow_tf32 = False
    ctx = primary_ctx()
    print("primary ctx", hex(ctx))
    dmx = nvc.CreateDemuxer(filename=str(hd))
    dec = nvc.CreateDecoder(gpuid=0, codec=dmx.GetNvCodecId(), usedevicememory=True)
    for i, pkt in enumerate(dmx):
        dec.Decode(pkt)
        if i > 5:
            break
    print("ctx after default Decode", hex(current_ctx()), "same" if current_ctx() == ctx else "DIFFERENT")
    conv = YuvToRgb(scale_plan(1920, 1080, "yuv420p", None, None), "cuda")
    print("conversion step", conv.step)
    hw = (1080, 1920)
    vids = [str(hd)] * 8
    for T in (1, 8):
        run("conversion alone", [None] * T, T, conv_only, convert=conv, hw=hw, reps=60)
    run("Decode, default ctx, sync per packet", vids, 8, loop, mode="", convert=conv, hw=hw, ctx=ctx)
    run("Decode, primary ctx + our stream", vids, 8, loop, mode="ctx", convert=conv, hw=hw, ctx=ctx)
    run("Threaded, default ctx, stack", vids, 8, threaded, convert=conv, hw=hw, ctx=ctx)
    run("Threaded, primary ctx + our stream, stack", vids, 8, threaded, mode="ctx", convert=conv, hw=hw, ctx=ctx)
    conv.step = 32
    run("conversion alone, one pass of 32", [None] * 8, 8, conv_only, convert=conv, hw=hw, reps=60)
    run("Threaded, primary ctx, one pass of 32", vids, 8, threaded, mode="ctx", convert=conv, hw=hw, ctx=ctx)
    run("Threaded, primary ctx, one pass of 32", vids * 2, 16, threaded, mode="ctx", convert=conv, hw=hw, ctx=ctx)
    # exactness against STEP3's ffmpeg command
    ref = np.frombuffer(subprocess.run(ffmpeg_command(str(hd)), capture_output=True).stdout,
                        np.uint8).reshape(-1, 27, 48, 3)
    for label, fn, mode in (("Decode primary ctx", loop, "ctx"), ("Threaded primary ctx", threaded, "ctx"),
                            ("Threaded default", threaded, "")):
        out = []
        fn(str(hd), Times(), mode=mode, convert=conv, hw=hw, ctx=ctx, out=out)
        got = out[0][0] if isinstance(out[0], tuple) else out[0]
        got = got.numpy()
        same = got.shape == ref.shape and np.array_equal(got, ref)
        extra = f" pts {out[0][1][:3]}..{out[0][1][-2:]}" if isinstance(out[0], tuple) else ""
        print(f"exact vs ffmpeg, {label}: {same} {got.shape} {ref.shape}{extra}", flush=True)
    # ThreadedDecoder start_frame: which frames come first
    for start in (0, 250, 1000):
        d = nvc.ThreadedDecoder(str(hd), buffer_size=8, gpu_id=0, use_device_memory=True, start_frame=start)
        fr = d.get_batch_frames(4)
        print("start_frame", start, "first pts", [f.getPTS() for f in fr], flush=True)
        d.end()


if __name__ == "__main__":
    main()
