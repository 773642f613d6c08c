"""The GPU decoder's parts that run without a GPU (CI): the ``decoder``
option on a machine without one, the timestamps NVDEC's frames get (checked
against ffmpeg's own), which videos go to NVDEC, and the mixed source's
routing and fallback through the real executor and driver, with a stand-in
for the GPU decoder (ffmpeg in the scheduler's thread, reporting as NVDEC,
failing mid-video on request). The GPU itself: test_nvdec_gpu.py."""
import io
import json
import subprocess
import queue
import threading
import time
from collections import deque
from fractions import Fraction

import pytest

from conftest import copy_to, ffmpeg, lines, run_step3
from shots.config import load_config
from shots.driver import Driver
from shots.executors.local import LocalExecutor, ffmpeg_source
from shots.frames.ffmpeg_reader import FrameReader
from shots.frames.messages import DecodeTask, FramesReady, MemoryChunk, SegmentPlan, TaskDone, TaskFailed
from shots.frames.mixed_source import MixedFrameSource
from shots.frames.nvdec_source import refusal, stands_at, start_offset
from shots.frames.nvdec_task import ffmpeg_time
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
    """In place of NvdecFrameSource (no GPU here): two sessions that decode
    in ``poll`` with ffmpeg, report their frames as NVDEC's, never seek (a
    task not at a video's first frame must go to the session that stopped
    there), and give up after 200 frames of a video named bad*, as NVDEC
    does on a decoder error (fallback)."""

    def __init__(self):
        self.tasks = deque()
        self.segments_decoded = []
        self.positions = {0: None, 1: None}  # session -> where it stopped
        self.busy = {}                       # session -> task id

    capacity = property(lambda self: 2)

    def plan(self, path, split):
        return plan_video(path)

    def cost(self, info, frames):
        return decode_seconds(info, frames)

    def idle(self, limit):
        return max(0, min(2, limit) - len(self.busy))

    def idle_positions(self):
        return {n: p for n, p in self.positions.items() if n not in self.busy}

    def end_unneeded(self, needed):
        for n, position in self.positions.items():
            if n not in self.busy and position is not None and not needed(position):
                self.positions[n] = None

    def submit(self, task, session=None):
        assert session is not None and session not in self.busy
        assert task.segment.first == 0 or stands_at(self.positions[session], task.info, task.segment.first), \
            "a seek was asked for"
        self.busy[session] = task.task_id
        self.tasks.append((session, task))

    def cancel(self, task_id):
        pass

    def poll(self, timeout):
        if not self.tasks:
            time.sleep(min(timeout, 0.005))
            return []
        session, task = self.tasks.popleft()
        del self.busy[session]
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
        self.segments_decoded.append((task.info.path.name, seg.first))
        self.positions[session] = (task.info, seg.first + report.frame_count) if seg.frames else None
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


def test_nvdec_goes_on_from_segment_to_segment_and_gives_the_cpu_results(tmp_path, media, weights_path):
    """Videos in segments of ~100 frames: the stand-in (which refuses any
    seek) goes on from one segment to the next of a video, the CPU helps
    from the end; the results are the CPU's, byte for byte."""
    for folder in ("cpu", "mixed"):
        for i in range(3):
            copy_to(media["cuts"], tmp_path / folder, f"cuts{i}.mp4")
    stand_in = StandInGpuDecoder()
    for folder in ("cpu", "mixed"):
        config = load_config(["--input-dir", str(tmp_path / folder), "--log-dir", str(tmp_path / "logs"),
                              "--device", "cpu", "--num-workers", "2", "--segment-frames", "100"], environ={})

        def make(decoders, cfg):
            return MixedFrameSource(stand_in, ffmpeg_source(decoders, cfg), min_pixels=320 * 180)
        out = io.StringIO()
        executor = LocalExecutor(config, weights_path, make if folder == "mixed" else None)
        assert Driver(config, Reporter(stream=out), executor).run() == 0, out.getvalue()
    # Each video's first segment opened a decoder; more than one continuation followed.
    assert sum(first > 0 for _, first in stand_in.segments_decoded) >= 2, stand_in.segments_decoded
    for i in range(3):
        a, b = (load_result(tmp_path / f / f"cuts{i}.scenes.json") for f in ("cpu", "mixed"))
        assert b["video"]["decoded_in_segments"] == 3 and a["predictions"] == b["predictions"]
        assert (tmp_path / "cpu" / f"cuts{i}.csv").read_bytes() == (tmp_path / "mixed" / f"cuts{i}.csv").read_bytes()


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


class Reached(Exception):
    pass


class StandingDecoder:
    """An open decoder as a session keeps it: says when it is read or ended."""

    def __init__(self):
        self.ended = False

    def get_batch_frames(self, n):
        raise Reached(n)

    def end(self):
        self.ended = True


def bookkeeping_source(sessions):
    """NvdecFrameSource's bookkeeping alone (no GPU, no decoder thread)."""
    import torch
    from shots.frames.nvdec_source import NvdecFrameSource, _Session
    source = object.__new__(NvdecFrameSource)
    source._sessions = [_Session(i, queue.Queue(), threading.Semaphore(1)) for i in range(sessions)]
    source._torch, source.device, source._converters, source._lock = torch, torch.device("cpu"), {}, threading.Lock()
    return source


def test_a_task_goes_on_in_the_session_standing_at_its_first_frame(media):
    """The session whose decoder stopped at the task's first frame takes it
    and reads on from that decoder (asked for the segment's frames, at most a
    batch); a task no session stands at, past a video's first frame, is
    refused before any decoding (the CPU then decodes that video)."""
    from shots.frames.nvdec_source import _END_DECODER, _ENDING, STALL_S, _Session
    from shots.frames.swscale_exact import NotExact
    info = probe(media["cuts"])
    source = bookkeeping_source(3)
    standing = StandingDecoder()
    elsewhere = probe(media["short"])
    source._sessions[0].position = (elsewhere, 150)
    source._sessions[1].position = (probe(media["cuts"]), 150)  # the same file, planned again: not this plan
    source._sessions[2].position, source._sessions[2].decoder = (info, 150), standing
    task = DecodeTask(1, info, SegmentPlan(6.0, 150, 20))
    source.submit(task)
    session = source._sessions[2]
    assert session.busy_with == 1 and session.tasks.get_nowait() is task
    with pytest.raises(Reached) as reached:  # past the position check, reading on
        source._decode(session, task, stream=None)
    assert reached.value.args == (20,) and standing.ended and session.position is None
    source.submit(DecodeTask(2, info, WHOLE_VIDEO))
    assert source._sessions[0].busy_with == 2 and source._sessions[0].tasks.get_nowait().task_id == 2
    assert source.idle_positions() == {1: (source._sessions[1].position[0], 150)}
    lone = _Session(9, queue.Queue(), threading.Semaphore(1))
    with pytest.raises(NotExact, match="does not seek"):
        source._decode(lone, DecodeTask(3, info, SegmentPlan(6.0, 150, 150)), stream=None)
    # A decoder nobody will go on with is ended; one that is still needed is kept.
    source._sessions[0].busy_with = None
    source._sessions[0].position = (info, 300)
    source.end_unneeded(lambda position: position[1] == 300)
    source.end_unneeded(lambda position: False)
    assert source._sessions[0].position is None and source._sessions[0].tasks.get_nowait() is _END_DECODER
    assert source._sessions[1].position is None and source._sessions[1].tasks.get_nowait() is _END_DECODER
    # Busy until its thread has ended the decoder; one that hangs there is lost, no video blamed.
    assert source._sessions[0].busy_with == _ENDING and 0 not in source.idle_positions()
    source._sessions[0].progress -= STALL_S + 1
    assert source._stalled() == [] and source._sessions[0].lost and source._sessions[0].busy_with is None
