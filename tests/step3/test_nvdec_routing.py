"""The mixed source's routing, on the CPU: which side (NVDEC or the ffmpeg
decoders) takes which segment of which video, and when. ``Side`` stands in
for either side: free slots, and where an idle NVDEC session's decoder stands."""
from pathlib import Path

import pytest

from conftest import copy_to
from shots.frames.messages import DecodeTask, SegmentPlan
from shots.frames.mixed_source import MixedFrameSource
from shots.frames.nvdec_source import nvdec_seconds
from shots.frames.probe import probe
from shots.frames.segments import WHOLE_VIDEO, decode_seconds, plan_video
from shots.frames.source import FrameSource


class Side(FrameSource):
    """One side of a mixed source for the routing rule: ``free`` slots;
    ``positions``: where an idle NVDEC session's decoder stands."""

    def __init__(self, capacity, cost=decode_seconds, split_frames=None):
        self.free, self._capacity, self._cost = capacity, capacity, cost
        self.split_frames, self.positions, self.sessions = split_frames, {}, []

    capacity = property(lambda self: self._capacity)

    def plan(self, path, split):
        return plan_video(path, split_frames=self.split_frames if split else None)

    def idle_positions(self):
        return {n: self.positions.get(n) for n in range(self.free)}

    def cost(self, info, frames):
        return self._cost(info, frames)

    def idle(self, limit):
        return min(self.free, limit)

    def submit(self, task, session=None):
        self.free -= 1
        self.sessions.append(session)

    def cancel(self, task_id):
        pass

    def poll(self, timeout):
        return []

    def close(self):
        pass


def plan(source, path, split):
    """As the scheduler plans a video: probed (a prober thread), then kept (planned)."""
    info, segments = source.plan(path, split)
    source.planned(path, info, segments)
    return info, segments


def route(source, path):
    """The side that would take the video's first waiting segment now (None: neither)."""
    video = source._videos[Path(path)]
    chosen = source._route(video, SegmentPlan(None, video.head, None))
    return chosen and chosen[0]


def test_each_segment_goes_to_the_side_that_shortens_the_run(tmp_path, media):
    """Large pictures go to NVDEC first, small ones to the CPU first; the
    other side takes one only when that does not make a tail."""
    big = [copy_to(media["cuts"], tmp_path, f"big{i}.mp4") for i in range(12)]        # 320x180
    small = [copy_to(media["short"], tmp_path, f"small{i}.mp4") for i in range(8)]    # 160x90

    def mixed(paths, gpu_free, cpu_free):
        gpu, cpu = Side(2, nvdec_seconds), Side(2)
        source = MixedFrameSource(gpu, cpu, min_pixels=320 * 180)
        for path in paths:
            plan(source, path, False)
        gpu.free, cpu.free = gpu_free, cpu_free
        return source, gpu, cpu

    source, gpu, cpu = mixed(big + small[:1], 2, 2)
    assert route(source, big[0]) is gpu and route(source, small[0]) is cpu
    # NVDEC busy: the CPU helps with a large video while eleven more wait for NVDEC...
    source, gpu, cpu = mixed(big, 0, 2)
    assert route(source, big[0]) is cpu
    # ... but not with the last one, which NVDEC finishes sooner.
    source, gpu, cpu = mixed(big[:1], 0, 2)
    assert not route(source, big[0])
    # The CPU busy: NVDEC takes a small video only when no large one waits for
    # it, and the CPU's queue is longer than NVDEC's time for it.
    source, gpu, cpu = mixed(big[:1] + small, 2, 0)
    assert not route(source, small[0])
    source, gpu, cpu = mixed(small[:1], 2, 0)
    assert not route(source, small[0])
    source, gpu, cpu = mixed(small, 2, 0)
    assert route(source, small[0]) is gpu
    # Submitted work no longer counts as waiting.
    for i, path in enumerate(small[1:]):
        cpu.free = 1
        source.submit(DecodeTask(i, probe(path), WHOLE_VIDEO))
    cpu.free = 0
    assert not route(source, small[0])


def test_no_nvdec_session_left_sends_everything_to_the_cpu(tmp_path, media):
    """Every session given up (stalled in the library): large pictures go to
    the CPU too, instead of waiting for NVDEC for ever."""
    big = copy_to(media["cuts"], tmp_path, "big.mp4")
    gpu, cpu = Side(0, nvdec_seconds), Side(2)
    source = MixedFrameSource(gpu, cpu, min_pixels=320 * 180)
    plan(source, big, False)
    assert route(source, big) is cpu


def test_waiting_work_is_kept_as_running_totals(tmp_path, media):
    """Planned, re-planned (a fallback), submitted and forgotten videos: what
    still waits is what the routing sees, never counted twice."""
    paths = [copy_to(media["cuts"], tmp_path, f"big{i}.mp4") for i in range(3)]
    source = MixedFrameSource(Side(2, nvdec_seconds), Side(2), min_pixels=320 * 180)
    for path in paths:
        plan(source, path, False)
    one = nvdec_seconds(probe(paths[0]), None) / 2  # per session
    assert source._waiting_seconds()[0] == pytest.approx(3 * one)
    plan(source, paths[0], False)  # planned again
    assert source._waiting_seconds()[0] == pytest.approx(3 * one)
    source.submit(DecodeTask(1, probe(paths[1]), WHOLE_VIDEO))
    source.forget_video(paths[2])
    assert source._waiting_seconds()[0] == pytest.approx(one)
    source.forget_video(paths[0])
    assert source._waiting_seconds() == (0.0, 0.0)


def test_nvdec_goes_on_where_it_stopped_and_the_cpu_helps_from_the_end(tmp_path, media):
    """NVDEC never seeks: a video's segments after its first go to the session
    whose decoder stopped there, and that session is kept for them; the CPU
    takes a large video's last segment when it will be done before NVDEC
    gets there, and goes on in order where no session will."""
    big = copy_to(media["cuts"], tmp_path, "big.mp4")        # 375 frames, cuts every 75
    other = copy_to(media["cuts"], tmp_path, "other.mp4")
    gpu, cpu = Side(1, nvdec_seconds), Side(2, split_frames=100)
    source = MixedFrameSource(gpu, cpu, min_pixels=320 * 180)
    info, segs = plan(source, big, True)
    plan(source, other, False)
    assert len(segs) == 3 and segs[0].first == 0
    second = segs[1].first
    assert source.choose(big, segs[0], segs[-1]) is segs[0]                      # NVDEC starts it at frame 0
    source.submit(DecodeTask(1, info, segs[0]))
    assert gpu.sessions == [0] and gpu.free == 0
    # While NVDEC decodes the first, the CPU takes the last (75 frames, well
    # before NVDEC would get there), not the second, which NVDEC goes on with.
    assert source.choose(big, segs[1], segs[2]) is segs[2]
    source.submit(DecodeTask(2, info, segs[2]))
    assert cpu.free == 1 and source.choose(big, segs[1], segs[1]) is None
    # The session is done and stands at the second's first frame: kept for it,
    # not for another video's start.
    gpu.free, gpu.positions = 1, {0: (info, second)}
    other_info = source._videos[other].info
    assert source._nvdec_session(other_info, 0) is None and source._nvdec_session(info, second) == 0
    assert source._nvdec_session(probe(big), second) is None  # the same file planned again: not this plan
    assert source.choose(big, segs[1], segs[1]) is segs[1]
    source.submit(DecodeTask(3, info, segs[1]))
    assert gpu.sessions == [0, 0]
    # A session standing where nothing waits any more is free for any start.
    gpu.free = 1
    assert source._nvdec_session(other_info, 0) == 0
    # No session stands at a video's next segment, and none is on it: the CPU goes on in order.
    info, segs = plan(source, big, True)
    with source._lock:
        source._videos[big].take(0)
    source._infos.clear()  # NVDEC's tasks ended (poll drops them)
    gpu.positions, cpu.free = {}, 1
    assert route(source, big) is cpu


def test_a_small_video_s_next_segment_goes_on_where_its_decoder_stands(tmp_path, media):
    """NVDEC took a small picture's first segment (the CPU was busy): its next
    one goes on in that session even while large pictures wait, so the kept
    session never sits idle with the video waiting for it."""
    small = copy_to(media["short"], tmp_path, "small.mp4")   # 160x90, 250 frames
    big = copy_to(media["cuts"], tmp_path, "big.mp4")
    gpu, cpu = Side(1, nvdec_seconds), Side(1, split_frames=50)
    source = MixedFrameSource(gpu, cpu, min_pixels=320 * 180)
    info, segs = plan(source, small, True)
    plan(source, big, True)
    assert len(segs) > 1
    with source._lock:
        source._videos[small].take(0)
    gpu.positions, cpu.free = {0: (info, segs[1].first)}, 0
    assert source.choose(small, segs[1], segs[-1]) is segs[1] and route(source, small) is gpu


def test_a_plan_is_routed_only_once_the_scheduler_keeps_it(tmp_path, media):
    """The prober's plan() decides nothing: a plan the scheduler drops (a
    stale one, of a video restarted or finished meanwhile) never counts."""
    big = copy_to(media["cuts"], tmp_path, "big.mp4")
    source = MixedFrameSource(Side(2, nvdec_seconds), Side(2), min_pixels=320 * 180)
    info, segments = source.plan(big, False)
    assert source._videos == {} and source._waiting_seconds() == (0.0, 0.0)
    source.planned(big, info, segments)
    assert source._videos[big].info is info and source._waiting_seconds()[0] > 0
