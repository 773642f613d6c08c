"""NVDEC against the ffmpeg decoders, opt-in (``--run-gpu``, on a machine
with an NVIDIA GPU and PyNvVideoCodec): the real driver and executor
in-process, the model on the GPU, each folder analysed once with
``decoder: cpu`` and once with NVDEC forced on every video (small ones
included). Same CSVs, predictions within 2e-3 (the model's batches differ),
frame_source "nvdec"; what NVDEC cannot decode falls back to ffmpeg."""
import io

import numpy as np
import pytest

from conftest import copy_to, ffmpeg, lines, run_step3
from shots.config import load_config
from shots.driver import Driver
from shots.executors.local import LocalExecutor, ffmpeg_source
from shots.frames.ffmpeg_reader import FrameReader
from shots.frames.messages import DecodeTask, FramesReady, TaskDone, TaskFailed
from shots.frames.probe import probe
from shots.frames.segments import WHOLE_VIDEO, plan_segments
from shots.report import Reporter
from stepkit.result_check import load_result

pytestmark = pytest.mark.gpu

CODECS = {  # name: (container, encoder options)
    "h264": ("mp4", ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]),
    "hevc": ("mkv", ["-c:v", "libx265", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-x265-params",
                     "log-level=error"]),
    "vp9": ("webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "2M"]),
    "hevc10": ("mkv", ["-c:v", "libx265", "-preset", "veryfast", "-pix_fmt", "yuv420p10le", "-x265-params",
                       "log-level=error"]),
    "av1": ("mkv", ["-c:v", "libaom-av1", "-usage", "realtime", "-cpu-used", "8", "-row-mt", "1", "-b:v", "2M"]),
}
SCENES = ["testsrc2=size=640x360:rate=25:duration=2", "mandelbrot=size=640x360:rate=25,trim=duration=2",
          "smptehdbars=size=640x360:rate=25:duration=2", "life=size=640x360:rate=25:mold=10,trim=duration=2"]


@pytest.fixture(scope="module")
def nvdec():
    import torch
    if not torch.cuda.is_available():
        pytest.fail("--run-gpu was given but PyTorch sees no CUDA device")
    from shots.frames import nvdec_source
    nvdec_source.load_library()  # fails the tests, with the reason, if PyNvVideoCodec cannot load
    return nvdec_source


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("nvdec")
    inputs = [a for src in SCENES for a in ("-f", "lavfi", "-i", src)]
    chain = "".join(f"[{i}]" for i in range(len(SCENES))) + f"concat=n={len(SCENES)}:v=1:a=0,format=yuv420p"
    made = {}
    for name, (container, options) in CODECS.items():
        made[name] = root / f"{name}.{container}"
        ffmpeg(*inputs, "-filter_complex", chain, "-colorspace", "bt709", *options, str(made[name]))
    return made


def run(folder, logs, weights=None, make_nvdec=None, *args):
    out = io.StringIO()
    decoder = "cpu" if make_nvdec is None else "nvdec"
    config = load_config(["--input-dir", str(folder), "--log-dir", str(logs), "--device", "cuda",
                          "--num-workers", "2", "--decoder", decoder, *args], environ={})
    executor = None
    if make_nvdec is not None:
        from shots.frames.mixed_source import MixedFrameSource

        def make(decoders, cfg):
            return MixedFrameSource(make_nvdec(), ffmpeg_source(decoders, cfg), min_pixels=0)
        executor = LocalExecutor(config, weights, make)
    code = Driver(config, Reporter(stream=out), executor).run()
    return code, out.getvalue().splitlines()


def compare(a_dir, b_dir, stem):
    a, b = (load_result(d / f"{stem}.scenes.json") for d in (a_dir, b_dir))
    assert (a_dir / f"{stem}.csv").read_bytes() == (b_dir / f"{stem}.csv").read_bytes(), stem
    assert a["video"]["frame_count"] == b["video"]["frame_count"]
    dp = np.abs(np.array(a["predictions"]["single_frame"]) - np.array(b["predictions"]["single_frame"])).max()
    print(f"{stem}: {a['video']['frame_count']} frames, max |dp| {dp:.1e}, {b['frame_source']}")
    assert dp <= 2e-3, stem
    return b


def test_nvdec_gives_the_cpu_results(tmp_path, nvdec, clips, sample_video, weights_path):
    for folder in ("cpu", "gpu"):
        copy_to(sample_video, tmp_path / folder, "sample.mp4")
        for name, path in clips.items():
            copy_to(path, tmp_path / folder, path.name)
    code_cpu, _ = run(tmp_path / "cpu", tmp_path / "logs")
    code_gpu, lines = run(tmp_path / "gpu", tmp_path / "logs", weights_path, nvdec.NvdecFrameSource)
    assert code_cpu == code_gpu == 0, lines
    for stem in ["sample"] + list(clips):
        doc = compare(tmp_path / "cpu", tmp_path / "gpu", stem)
        if stem != "av1":
            assert doc["frame_source"] == "nvdec", stem
        elif doc["frame_source"] == "ffmpeg":  # a card without AV1: one line says so
            assert any(ln.startswith("WARNING:") and "av1.mkv: NVDEC failed" in ln for ln in lines), lines


@pytest.mark.parametrize("cpu_helps", [False, True], ids=["nvdec-alone", "cpu-from-the-end"])
def test_long_video_in_nvdec_segments(tmp_path, nvdec, sample_video, weights_path, monkeypatch, cpu_helps):
    """The sample (5,301 frames, 160x90 with audio) in segments of about 1,000
    frames. NVDEC never seeks (its seek crashed the process on this very file):
    one session goes on from segment to segment; the CPU may take segments
    from the end. The same CSV either way, and the process lives."""
    from shots.frames import mixed_source
    if not cpu_helps:
        monkeypatch.setattr(mixed_source, "CPU_MARGIN", 1e9)
    for folder in ("cpu", "gpu"):
        copy_to(sample_video, tmp_path / folder, "sample.mp4")
    run(tmp_path / "cpu", tmp_path / "logs", None, None, "--segment-frames", "1000")
    code, lines = run(tmp_path / "gpu", tmp_path / "logs", weights_path, nvdec.NvdecFrameSource,
                      "--segment-frames", "1000")
    assert code == 0, lines
    doc = compare(tmp_path / "cpu", tmp_path / "gpu", "sample")
    assert doc["video"]["decoded_in_segments"] > 1
    assert doc["frame_source"] == (["ffmpeg", "nvdec"] if cpu_helps else "nvdec"), doc["frame_source"]
    assert not [ln for ln in lines if "in one piece" in ln or "NVDEC failed" in ln], lines


def test_a_decoder_error_mid_video_redoes_that_video_on_the_cpu(tmp_path, nvdec, clips, weights_path):
    class Failing(nvdec.TaskRun):
        def add(self, frames):
            if self.task.info.path.name == "bad.mp4" and self.count + self.filled >= 100:
                raise RuntimeError("injected decoder error")
            return super().add(frames)

    class FailingSource(nvdec.NvdecFrameSource):
        def _task_run(self, session, task, time_base, offset):
            return Failing(self, session, task, time_base, offset)

    for folder in ("cpu", "gpu"):
        copy_to(clips["h264"], tmp_path / folder, "bad.mp4")
        copy_to(clips["h264"], tmp_path / folder, "good.mp4")
    run(tmp_path / "cpu", tmp_path / "logs")
    code, lines = run(tmp_path / "gpu", tmp_path / "logs", weights_path, FailingSource)
    assert code == 0, lines
    warned = [ln for ln in lines if ln.startswith("WARNING:") and "bad.mp4" in ln]
    assert len(warned) == 1 and "injected decoder error" in warned[0] and "ffmpeg on the CPU" in warned[0]
    assert compare(tmp_path / "cpu", tmp_path / "gpu", "bad")["frame_source"] == "ffmpeg"
    assert compare(tmp_path / "cpu", tmp_path / "gpu", "good")["frame_source"] == "nvdec"


def decode_on(source, task):
    frames, report = [], None
    source.submit(task)
    while report is None:
        for message in source.poll(0.05):
            if isinstance(message, FramesReady):
                frames.append(message.chunk.take().cpu().numpy())
            elif isinstance(message, TaskDone):
                report = message.report
            elif isinstance(message, TaskFailed):
                pytest.fail(message.cause)
    return np.concatenate(frames), report


def decode_on_cpu(task):
    seg = task.segment
    reader = FrameReader(task.info, chunk=500, start=seg.start, max_frames=seg.frames, absolute=seg.frames is not None)
    frames = []
    while (chunk := reader.read()) is not None:
        frames.append(chunk)
    return np.concatenate(frames), reader.finish()


@pytest.mark.parametrize("graphs", [False, True], ids=["eager", "cuda-graphs"])
def test_nvdec_frames_are_ffmpeg_frames(tmp_path, nvdec, clips, graphs, monkeypatch):
    """Byte for byte, with the same timestamps: whole videos, and the segments
    of a full-HD one in order (each goes on where the last stopped, in the
    same session), in batches that must not be overwritten by the decoder's
    thread while they are copied; with the conversion eager, and replayed as
    CUDA graphs (nvdec_graph.py: full batches; the last, partial one eager)."""
    from shots.frames import nvdec_graph
    monkeypatch.setattr(nvdec_graph, "ENABLED", graphs)
    hd = tmp_path / "hd.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=25:duration=12,noise=alls=30:allf=t",
           "-colorspace", "bt709", "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-pix_fmt", "yuv420p",
           str(hd))
    source = nvdec.NvdecFrameSource(sessions=2)
    try:
        tasks = [DecodeTask(i, probe(p), WHOLE_VIDEO) for i, p in enumerate([hd, *clips.values()])
                 if nvdec.refusal(probe(p)) is None and probe(p).codec != "av1"]
        info = probe(hd)
        tasks += [DecodeTask(100 + i, info, seg) for i, seg in enumerate(plan_segments(info, 60))]
        assert len(tasks) >= 8  # five whole videos (AV1 aside), three segments
        for task in tasks:
            got, report = decode_on(source, task)
            want, want_report = decode_on_cpu(task)
            name = f"{task.info.path.name} from frame {task.segment.first}"
            assert got.shape == want.shape and np.array_equal(got, want), name
            assert report.timestamps == want_report.timestamps, name
        totals = source.totals()
        print("sessions' totals:", totals)  # "relabelled": VP9 frames NVDEC gave another pts
        assert not totals.get("graph_failed") and bool(totals.get("graphs")) == graphs, totals
    finally:
        source.close()


def damage(src, dst, how):
    """A copy of ``src`` with 32 KB of its middle overwritten (seeded bytes),
    or cut at 60 % (the index at the front promises frames that are not there)."""
    data = bytearray(src.read_bytes())
    if how == "cut":
        data = data[:len(data) * 6 // 10]
    else:
        middle = len(data) // 2
        data[middle:middle + 32768] = np.random.default_rng(7).integers(0, 256, 32768, dtype=np.uint8).tobytes()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(bytes(data))


def test_damaged_files_fail_alone_and_the_process_survives(tmp_path, nvdec, clips):
    """The real script, NVDEC forced: a damaged file must not take the process
    down (ThreadedDecoder decodes in a C++ thread of its own) nor hold the
    batch; the good video is NVDEC's and the same as ffmpeg's. What NVDEC made
    of each damaged file is printed for the notes."""
    src = tmp_path / "faststart.mp4"  # the index first, so a cut file still opens
    ffmpeg("-i", str(clips["h264"]), "-c", "copy", "-movflags", "+faststart", str(src))
    for folder in ("cpu", "gpu"):
        copy_to(clips["h264"], tmp_path / folder, "good.mp4")
        damage(src, tmp_path / folder / "noisy.mp4", "noise")
        damage(src, tmp_path / folder / "cut.mp4", "cut")
    procs = {}
    for folder, decoder in (("cpu", "cpu"), ("gpu", "nvdec")):
        procs[folder] = run_step3("--input-dir", tmp_path / folder, "--log-dir", tmp_path / "logs", "--device",
                                  "cuda", "--num-workers", "2", "--decoder", decoder, timeout=300)
    gpu = procs["gpu"]
    assert gpu.returncode in (0, 1), (gpu.returncode, gpu.stdout[-2000:], gpu.stderr[-2000:])
    assert compare(tmp_path / "cpu", tmp_path / "gpu", "good")["frame_source"] == "nvdec"
    for stem in ("noisy", "cut"):
        done = (tmp_path / "gpu" / f"{stem}.csv").exists()
        failed = {f: [ln for ln in lines(procs[f], "FAILED:") if f"{stem}.mp4" in ln] for f in procs}
        # The same outcome as the CPU's: the same result, or the same one-line failure.
        assert done == (tmp_path / "cpu" / f"{stem}.csv").exists(), (stem, gpu.stdout[-3000:])
        assert failed["gpu"] == failed["cpu"] and len(failed["gpu"]) == (0 if done else 1), (stem, failed)
        errors = failed["gpu"]
        same_as_cpu = done and \
            (tmp_path / "cpu" / f"{stem}.csv").read_bytes() == (tmp_path / "gpu" / f"{stem}.csv").read_bytes()
        assert same_as_cpu or not done, stem
        source = load_result(tmp_path / "gpu" / f"{stem}.scenes.json")["frame_source"] if done else None
        print(f"{stem}: done {done}, source {source}, CSV as ffmpeg's {same_as_cpu}, errors {errors}, "
              f"warnings {[ln for ln in lines(gpu, 'WARNING:') if stem in ln]}")
