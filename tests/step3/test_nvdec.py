"""The GPU decoder's parts that run without a GPU (CI): the ``decoder``
option on a machine without one, the timestamps NVDEC's frames get (checked
against ffmpeg's own), which videos go to NVDEC, and the mixed source's
routing and fallback through the real executor and driver, with a stand-in
for the GPU decoder (ffmpeg in the scheduler's thread, reporting as NVDEC,
failing mid-video on request). The GPU itself: test_nvdec_gpu.py."""
import io
import json
import subprocess
import time
from collections import deque
from fractions import Fraction

import pytest

from conftest import copy_to, ffmpeg, lines, run_step3
from shots.config import load_config
from shots.driver import Driver
from shots.executors.local import LocalExecutor, ffmpeg_source
from shots.frames.ffmpeg_reader import FrameReader
from shots.frames.messages import DecodeTask, FramesReady, MemoryChunk, TaskDone, TaskFailed
from shots.frames.mixed_source import MixedFrameSource
from shots.frames.nvdec_source import ffmpeg_time, refusal, start_offset
from shots.frames.probe import probe
from shots.frames.segments import WHOLE_VIDEO, decode_seconds, plan_video
from shots.frames.source import FrameSource
from shots.report import Reporter
from stepkit.result_check import load_result


def test_nvdec_asked_for_without_a_gpu_warns_and_gives_the_cpu_results(tmp_path, media):
    for folder in ("cpu", "nvdec"):
        copy_to(media["short"], tmp_path / folder, "short.mp4")
    cpu = run_step3("--input-dir", tmp_path / "cpu", "--log-dir", tmp_path / "logs", "--decoder", "cpu")
    nvdec = run_step3("--input-dir", tmp_path / "nvdec", "--log-dir", tmp_path / "logs", "--decoder", "nvdec")
    assert cpu.returncode == nvdec.returncode == 0, nvdec.stdout + nvdec.stderr
    warned = lines(nvdec, "WARNING:")
    assert len(warned) == 1 and "decoder 'nvdec'" in warned[0] and "ffmpeg on the CPU" in warned[0], warned
    assert not lines(cpu, "WARNING:")
    a, b = (load_result(tmp_path / f / "short.scenes.json") for f in ("cpu", "nvdec"))
    assert a["predictions"] == b["predictions"] and a["frame_source"] == b["frame_source"] == "ffmpeg"
    assert (tmp_path / "cpu" / "short.csv").read_bytes() == (tmp_path / "nvdec" / "short.csv").read_bytes()


def frame_pts(path, stream=0):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", f"v:{stream}", "-show_entries",
                          "stream=time_base:frame=pts", "-of", "json", str(path)], capture_output=True,
                         check=True, text=True).stdout
    data = json.loads(out)
    return Fraction(data["streams"][0]["time_base"]), [f["pts"] for f in data["frames"]]


@pytest.mark.parametrize("container", ["ts", "mp4"])
def test_timestamps_as_ffmpeg_prints_them(tmp_path, container):
    """A file that starts late (MPEG-TS starts at 1.4 s) at an odd rate:
    whole, timestamps from 0; a segment, the file's own."""
    path = tmp_path / f"late.{container}"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30000/1001:duration=4", "-c:v", "libx264",
           "-g", "30", "-output_ts_offset", "1000.4", str(path))
    info = probe(path)
    time_base, pts = frame_pts(path)
    reader = FrameReader(info)
    while reader.read() is not None:
        pass
    whole = reader.finish().timestamps
    offset = start_offset(info, time_base)
    assert [ffmpeg_time(p, offset, time_base) for p in pts] == whole
    reader = FrameReader(info, absolute=True, start=None, max_frames=len(pts))
    while reader.read() is not None:
        pass
    kept = reader.finish().timestamps
    assert [ffmpeg_time(p, 0, time_base) for p in pts] == kept
    assert whole[0] == 0.0 and kept[0] > 1000


def test_which_videos_nvdec_takes(tmp_path):
    made = {}
    for name, args in {"h264": ["-c:v", "libx264", "-pix_fmt", "yuv420p"],
                       "h264_422": ["-c:v", "libx264", "-pix_fmt", "yuv422p"],
                       "mjpeg": ["-c:v", "mjpeg"], "odd": ["-c:v", "ffv1", "-s", "641x359"]}.items():
        made[name] = tmp_path / f"{name}.mkv"
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=1,format=rgb24", *args, str(made[name]))
    assert refusal(probe(made["h264"])) is None
    assert "pixel format yuv422p" in refusal(probe(made["h264_422"]))
    assert "codec mjpeg" in refusal(probe(made["mjpeg"]))
    assert "codec ffv1" in refusal(probe(made["odd"]))


class StandInGpuDecoder(FrameSource):
    """In place of NvdecFrameSource (no GPU here): decodes in ``poll`` with
    ffmpeg, reports its frames as NVDEC's, and gives up after 200 frames of a
    video named bad*, as NVDEC does on a decoder error (fallback)."""

    def __init__(self):
        self.tasks = deque()
        self.busy = 0

    capacity = property(lambda self: 2)

    def plan(self, path, split):
        return plan_video(path)

    def cost(self, info, frames):
        return decode_seconds(info, frames)

    def idle(self, limit):
        return max(0, min(2, limit) - self.busy)

    def submit(self, task):
        self.busy += 1
        self.tasks.append(task)

    def cancel(self, task_id):
        pass

    def poll(self, timeout):
        if not self.tasks:
            time.sleep(min(timeout, 0.005))
            return []
        task = self.tasks.popleft()
        self.busy -= 1
        seg = task.segment
        reader = FrameReader(task.info, chunk=100, start=seg.start, max_frames=seg.frames,
                             absolute=seg.frames is not None)
        out = []
        while (chunk := reader.read()) is not None:
            out.append(FramesReady(task.task_id, MemoryChunk(chunk)))
            if task.info.path.name.startswith("bad") and len(out) == 2:
                reader.kill()
                return out + [TaskFailed(task.task_id, "NVDEC failed (stand-in error)", fallback=True)]
        report = reader.finish()
        report.decoder = "nvdec"
        return out + [TaskDone(task.task_id, report)]

    def close(self):
        self.tasks.clear()


def test_mixed_source_routes_and_falls_back(tmp_path, media, weights_path):
    for folder in ("cpu", "mixed"):
        copy_to(media["cuts"], tmp_path / folder, "cuts.mp4")       # 320x180
        copy_to(media["cuts"], tmp_path / folder, "bad_cuts.mp4")   # fails on the stand-in after 200 frames
        copy_to(media["short"], tmp_path / folder, "short.mp4")     # 160x90: below the size given, CPU
    results = {}
    for folder in ("cpu", "mixed"):
        config = load_config(["--input-dir", str(tmp_path / folder), "--log-dir", str(tmp_path / "logs"),
                              "--device", "cpu", "--decoder", "cpu" if folder == "cpu" else "auto"], environ={})

        def make(decoders, cfg):
            return MixedFrameSource(StandInGpuDecoder(), ffmpeg_source(decoders, cfg), min_pixels=320 * 180)
        out = io.StringIO()
        executor = LocalExecutor(config, weights_path, make if folder == "mixed" else None)
        assert Driver(config, Reporter(stream=out), executor).run() == 0, out.getvalue()
        results[folder] = out.getvalue().splitlines()
    got = results["mixed"]
    assert any("short.mp4: decoded by ffmpeg on the CPU, small picture (160x90)" in ln for ln in got), got
    assert any("cuts.mp4: decoded by NVDEC on the GPU" in ln for ln in got)
    warned = [ln for ln in got if ln.startswith("WARNING:")]
    assert len(warned) == 1 and "bad_cuts.mp4: NVDEC failed (stand-in error)" in warned[0], warned
    assert any("bad_cuts.mp4: decoded by ffmpeg on the CPU: NVDEC failed on it earlier" in ln for ln in got)
    # Which side decoded what depends on which was free; the frames never differ.
    sources = {"cuts": {"nvdec"}, "bad_cuts": {"ffmpeg"}, "short": {"ffmpeg"}}
    for stem, source in sources.items():
        a, b = (load_result(tmp_path / f / f"{stem}.scenes.json") for f in ("cpu", "mixed"))
        used = set(b["frame_source"]) if isinstance(b["frame_source"], list) else {b["frame_source"]}
        assert source <= used, (stem, used)
        assert a["predictions"] == b["predictions"], stem
        assert (tmp_path / "cpu" / f"{stem}.csv").read_bytes() == (tmp_path / "mixed" / f"{stem}.csv").read_bytes()


class Side(FrameSource):
    """One side of a mixed source for the routing rule: ``free`` slots."""

    def __init__(self, capacity, cost=decode_seconds):
        self.free, self._capacity, self._cost = capacity, capacity, cost

    capacity = property(lambda self: self._capacity)

    def plan(self, path, split):
        return plan_video(path)

    def cost(self, info, frames):
        return self._cost(info, frames)

    def idle(self, limit):
        return min(self.free, limit)

    def submit(self, task):
        self.free -= 1

    def cancel(self, task_id):
        pass

    def poll(self, timeout):
        return []

    def close(self):
        pass


def test_each_segment_goes_to_the_side_that_shortens_the_run(tmp_path, media):
    """Large pictures go to NVDEC first, small ones to the CPU first; the
    other side takes one only when that does not make a tail."""
    from shots.frames import mixed_source
    big = [copy_to(media["cuts"], tmp_path, f"big{i}.mp4") for i in range(12)]        # 320x180
    small = [copy_to(media["short"], tmp_path, f"small{i}.mp4") for i in range(8)]    # 160x90

    def mixed(paths, gpu_free, cpu_free):
        gpu, cpu = Side(2, mixed_source.nvdec_seconds), Side(2)
        source = MixedFrameSource(gpu, cpu, min_pixels=320 * 180)
        for path in paths:
            source.plan(path, False)
        gpu.free, cpu.free = gpu_free, cpu_free
        return source, gpu, cpu

    source, gpu, cpu = mixed(big + small[:1], 2, 2)
    assert source._target(probe(big[0]), None) is gpu and source._target(probe(small[0]), None) is cpu
    # NVDEC busy: the CPU helps with a large video while eleven more wait for NVDEC...
    source, gpu, cpu = mixed(big, 0, 2)
    assert source.can_take(big[0]) and source._target(probe(big[0]), None) is cpu
    # ... but not with the last one, which NVDEC finishes sooner.
    source, gpu, cpu = mixed(big[:1], 0, 2)
    assert not source.can_take(big[0])
    # The CPU busy: NVDEC takes a small video only when no large one waits for
    # it, and the CPU's queue is longer than NVDEC's time for it.
    source, gpu, cpu = mixed(big[:1] + small, 2, 0)
    assert not source.can_take(small[0])
    source, gpu, cpu = mixed(small[:1], 2, 0)
    assert not source.can_take(small[0])
    source, gpu, cpu = mixed(small, 2, 0)
    assert source.can_take(small[0]) and source._target(probe(small[0]), None) is gpu
    # Submitted work no longer counts as waiting.
    for i, path in enumerate(small[1:]):
        cpu.free = 1
        source.submit(DecodeTask(i, probe(path), WHOLE_VIDEO))
    cpu.free = 0
    assert not source.can_take(small[0])


def test_no_nvdec_session_left_sends_everything_to_the_cpu(tmp_path, media):
    """Every session given up (stalled in the library): large pictures go to
    the CPU too, instead of waiting for NVDEC for ever."""
    from shots.frames import mixed_source
    big = copy_to(media["cuts"], tmp_path, "big.mp4")
    gpu, cpu = Side(0, mixed_source.nvdec_seconds), Side(2)
    source = MixedFrameSource(gpu, cpu, min_pixels=320 * 180)
    source.plan(big, False)
    assert source.can_take(big) and source._target(probe(big), None) is cpu


def test_waiting_work_is_kept_as_running_totals(tmp_path, media):
    """Planned, re-planned (a fallback), submitted and forgotten videos: what
    still waits is what the routing sees, never counted twice."""
    from shots.frames import mixed_source
    paths = [copy_to(media["cuts"], tmp_path, f"big{i}.mp4") for i in range(3)]
    source = MixedFrameSource(Side(2, mixed_source.nvdec_seconds), Side(2), min_pixels=320 * 180)
    for path in paths:
        source.plan(path, False)
    one = mixed_source.nvdec_seconds(probe(paths[0]), None) / 2  # per session
    assert source._waiting_seconds()[0] == pytest.approx(3 * one)
    source.plan(paths[0], False)  # planned again
    assert source._waiting_seconds()[0] == pytest.approx(3 * one)
    source.submit(DecodeTask(1, probe(paths[1]), WHOLE_VIDEO))
    source.forget_video(paths[2])
    assert source._waiting_seconds()[0] == pytest.approx(one)
    source.forget_video(paths[0])
    assert source._waiting_seconds() == (0.0, 0.0)


@pytest.mark.parametrize("start, first, same", [
    (12.48, 12.4805, True), (12.48, 12.482, False),
    (1019.519499, 1019.52, True),   # showinfo's %.6g of a frame at 1019.5195 s
    (1019.519499, 1019.55, False),  # the next frame at 29.97 fps
    (0.0, 0.0, True)])
def test_a_segment_start_is_compared_at_the_timestamps_precision(start, first, same):
    from shots.video_job import start_tolerance
    assert (abs(first - start) < start_tolerance(start)) is same


class Run:
    """What NvdecFrameSource's checks read of a task's run."""

    def __init__(self, count=0, timestamps=(), filled=0, raises=None, result=True):
        self.count, self.timestamps, self.filled = count, list(timestamps), filled
        self._raises, self._result = raises, result

    def decode(self, stream, first):
        if self._raises:
            raise self._raises
        return self._result


def test_a_short_or_empty_nvdec_task_goes_to_the_cpu(media):
    """ThreadedDecoder ends quietly when its thread fails: a segment short of
    its frames, a video with none, or one that stops well before its end is
    an NVDEC failure (the CPU then decodes it and says what the file holds)."""
    from shots.frames.messages import SegmentPlan
    from shots.frames.nvdec_source import NvdecFrameSource as Source
    info = probe(media["cuts"])  # 15 s
    whole, segment = DecodeTask(1, info, WHOLE_VIDEO), DecodeTask(2, info, SegmentPlan(5.0, 125, 100))
    Source._check_complete(Run(100, [5.0 + i / 25 for i in range(100)]), segment)
    Source._check_complete(Run(info.expected_frames, [i / 25 for i in range(info.expected_frames)]), whole)
    for run, task, said in ((Run(99, [0.0] * 99), segment, "99 frames instead of 100"),
                            (Run(0, []), whole, "no frame"),
                            (Run(50, [i / 25 for i in range(50)]), whole, "stopped early")):
        with pytest.raises(RuntimeError, match=said):
            Source._check_complete(run, task)


def test_a_seek_that_fails_before_any_frame_is_a_failed_seek():
    from shots.frames.nvdec_source import NvdecFrameSource as Source
    assert Source._seek_worked(Run(), None, 250) is True
    assert Source._seek_worked(Run(result=False), None, 250) is False       # landed after the start
    assert Source._seek_worked(Run(raises=RuntimeError("seek")), None, 250) is False
    with pytest.raises(RuntimeError):  # from the file's start, or after frames were sent: a real error
        Source._seek_worked(Run(raises=RuntimeError("decode")), None, 0)
    with pytest.raises(RuntimeError):
        Source._seek_worked(Run(count=32, raises=RuntimeError("decode")), None, 250)
