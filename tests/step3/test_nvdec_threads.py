"""NvdecFrameSource's own threads on the CPU: the real sessions, queues,
continuations and conversion, with a stand-in for PyNvVideoCodec that serves
the NV12 surfaces ffmpeg decodes from a real clip (and their timestamps), and
CUDA's stream calls made no-ops. The frames must be ffmpeg's own, byte for
byte, whether a video comes whole or as segments that go on one from another;
a segment no session stands at is refused (NVDEC never seeks); a decoder no
task will go on with is ended. Timestamps NVDEC gets wrong (as the H200 did on
a VP9 superframe) are ffmpeg's all the same, or the video goes to the CPU."""
import contextlib
import subprocess
from fractions import Fraction

import numpy as np
import pytest
import torch

from shots.frames import nvdec_source
from shots.frames.ffmpeg_reader import FrameReader
from shots.frames.messages import DecodeTask, FramesReady, TaskDone, TaskFailed
from shots.frames.segments import WHOLE_VIDEO, plan_video


class Surface:
    """A decoded frame as PyNvVideoCodec hands it over: DLPack and a pts."""

    def __init__(self, planes: torch.Tensor, pts: int):
        self._planes, self._pts = planes, pts

    def getPTS(self):  # noqa: N802 (the library's name)
        return self._pts

    def __dlpack__(self, *args, **kwargs):
        return self._planes.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._planes.__dlpack_device__()


class StandInLibrary:
    """What NvdecFrameSource asks of PyNvVideoCodec, for one clip."""

    def __init__(self, path, width, height, mislabel=()):
        raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-fps_mode", "passthrough", "-f",
                              "rawvideo", "-pix_fmt", "nv12", "-"], check=True, capture_output=True).stdout
        frames = np.frombuffer(raw, np.uint8).reshape(-1, height * 3 // 2, width)
        def ask(entries):
            return subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", entries,
                                   "-of", "default=nw=1:nk=1", str(path)],
                                  check=True, capture_output=True, text=True).stdout.split()
        self.time_base = Fraction(ask("stream=time_base")[0])
        pts = [int(v) for v in ask("frame=pts")]
        assert len(pts) == len(frames)
        for i in mislabel:  # labelled with the frame before's pts, as NVDEC did
            pts[i] = pts[i - 1]
        self.surfaces = [Surface(torch.from_numpy(f.copy()), p) for f, p in zip(frames, pts)]
        self.opened, self.ended = 0, 0

    def CreateDemuxer(self, filename):  # noqa: N802
        library = self

        class Demuxer:
            GetVideoStreamId = staticmethod(lambda: 0)  # noqa: N815
            GetTimebaseNum = staticmethod(lambda: library.time_base.numerator)  # noqa: N815
            GetTimebaseDen = staticmethod(lambda: library.time_base.denominator)  # noqa: N815
            GetNvCodecId = staticmethod(lambda: 4)  # noqa: N815
            ChromaFormat = staticmethod(lambda: 1)  # noqa: N815
            BitDepth = staticmethod(lambda: 8)  # noqa: N815
        return Demuxer()

    def GetDecoderCaps(self, **kwargs):  # noqa: N802
        return {"num_decoder_engines": 7, "width_max": 8192, "height_max": 8192}

    def ThreadedDecoder(self, path, buffer_size, gpu_id, cuda_stream, use_device_memory):  # noqa: N802
        library = self
        library.opened += 1

        class Decoder:
            next = 0

            def get_batch_frames(self, n):
                batch = library.surfaces[self.next:self.next + n]
                self.next += len(batch)
                return batch

            def end(self):
                library.ended += 1
        return Decoder()


def stand_in_source(monkeypatch, path, mislabel=()):
    """An NvdecFrameSource of two sessions on the CPU, its library the stand-in for ``path``."""
    info, _ = plan_video(path)
    library = StandInLibrary(path, info.width, info.height, mislabel)
    no_stream = type("NoStream", (), {"cuda_stream": 0, "synchronize": lambda self: None})
    monkeypatch.setattr(nvdec_source, "load_library", lambda: library)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: no_stream())
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: no_stream())
    source = nvdec_source.NvdecFrameSource(sessions=2)
    source.device = torch.device("cpu")
    return source, library


@pytest.fixture
def cpu_nvdec(monkeypatch, media):
    source, library = stand_in_source(monkeypatch, media["cuts"])
    yield source, library
    source.close()


def decode(source, task):
    """(frames, report) of one task, or the TaskFailed."""
    source.submit(task)
    frames = []
    for _ in range(2000):
        for message in source.poll(0.05):
            if isinstance(message, FramesReady):
                frames.append(message.chunk.take().numpy())
            elif isinstance(message, TaskDone):
                return np.concatenate(frames), message.report
            elif isinstance(message, TaskFailed):
                return message, None
    pytest.fail("no end to the task")


def ffmpeg_frames(task):
    seg = task.segment
    reader = FrameReader(task.info, chunk=500, start=seg.start, max_frames=seg.frames,
                         absolute=seg.frames is not None)
    frames = []
    while (chunk := reader.read()) is not None:
        frames.append(chunk)
    return np.concatenate(frames), reader.finish()


def test_segments_go_on_from_one_another_and_give_ffmpeg_s_frames(cpu_nvdec, media):
    source, library = cpu_nvdec
    info, segments = plan_video(media["cuts"], split_frames=100)
    assert len(segments) == 3
    for task in [DecodeTask(i, info, seg) for i, seg in enumerate(segments)] + [DecodeTask(9, info, WHOLE_VIDEO)]:
        got, report = decode(source, task)
        assert report is not None, got.cause
        want, want_report = ffmpeg_frames(task)
        assert got.shape == want.shape and np.array_equal(got, want), task.segment
        assert report.timestamps == want_report.timestamps, task.segment
    # One decoder went through the three segments, a second one through the whole video.
    assert library.opened == 2 and library.ended == 1


def test_no_seek_and_decoders_nobody_needs_are_ended(cpu_nvdec, media):
    source, library = cpu_nvdec
    info, segments = plan_video(media["cuts"], split_frames=100)
    failed, _ = decode(source, DecodeTask(1, info, segments[1]))  # no session stands there
    assert isinstance(failed, TaskFailed) and failed.fallback and "does not seek" in failed.cause
    assert library.opened == 0
    decode(source, DecodeTask(2, info, segments[0]))
    standing = [n for n, p in source.idle_positions().items() if p is not None]
    assert len(standing) == 1 and library.ended == 0
    source.end_unneeded(lambda position: False)
    for _ in range(100):
        if library.ended:
            break
        source.poll(0.05)
    assert library.ended == 1 and all(p is None for p in source.idle_positions().values())
    assert source.idle(2) == 2


@pytest.fixture(scope="module")
def vp9_clip(media, tmp_path_factory):
    """4 s of the cuts clip as VP9 in WebM (the codec whose packets each show one frame)."""
    path = tmp_path_factory.mktemp("vp9") / "cuts.webm"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(media["cuts"]), "-t", "4", "-c:v", "libvpx-vp9",
                    "-deadline", "realtime", "-cpu-used", "8", "-b:v", "1M", str(path)], check=True)
    return path


def test_vp9_frames_take_their_packets_timestamps(monkeypatch, vp9_clip):
    source, library = stand_in_source(monkeypatch, vp9_clip, mislabel=(11, 40, 41))
    try:
        info, _ = plan_video(vp9_clip)
        task = DecodeTask(1, info, WHOLE_VIDEO)
        got, report = decode(source, task)
        assert report is not None, got.cause
        want, want_report = ffmpeg_frames(task)
        assert np.array_equal(got, want)
        assert report.timestamps == want_report.timestamps
        assert source.totals()["relabelled"] == 3  # NVDEC's three wrong labels were not used
    finally:
        source.close()


def test_vp9_frames_fewer_than_its_packets_go_to_the_cpu(monkeypatch, vp9_clip):
    source, library = stand_in_source(monkeypatch, vp9_clip)
    packets = len(library.surfaces)  # one shown frame each
    del library.surfaces[-1:]  # one frame short (within the length check): labels by packet cannot be trusted
    try:
        info, _ = plan_video(vp9_clip)
        failed, _ = decode(source, DecodeTask(1, info, WHOLE_VIDEO))
        assert isinstance(failed, TaskFailed) and failed.fallback
        assert f"NVDEC gave {packets - 1} frames for {packets} packets" in failed.cause, failed.cause
    finally:
        source.close()


def test_timestamps_that_are_not_the_packets_go_to_the_cpu(monkeypatch, media):
    """Elsewhere (H.264 with B-frames here) NVDEC's own labels must be the
    packets' pts in order, as ffmpeg shows them; one that is not goes to the CPU."""
    source, _ = stand_in_source(monkeypatch, media["cuts"], mislabel=(40,))
    try:
        info, _ = plan_video(media["cuts"])
        failed, _ = decode(source, DecodeTask(1, info, WHOLE_VIDEO))
        assert isinstance(failed, TaskFailed) and failed.fallback
        assert "NVDEC's frame 40 has pts" in failed.cause, failed.cause
    finally:
        source.close()


def source_for(decoder, folder, model_device, monkeypatch=None):
    """frame_source() for ``decoder`` beside a model on ``model_device``: (source, what it said)."""
    from shots.config import load_config
    from shots.executors.local import frame_source
    config = load_config(["--input-dir", str(folder), "--decoder", decoder], environ={})
    said = []
    return frame_source(2, config, model_device, lambda level, text: said.append((level, text))), said


@pytest.mark.parametrize("decoder", ["auto", "nvdec"])
def test_auto_and_nvdec_decode_with_nvdec_beside_a_gpu_model(monkeypatch, media, decoder):
    from shots.frames.mixed_source import MixedFrameSource
    stand_in_source(monkeypatch, media["cuts"])[0].close()  # the stand-in library, CUDA's calls made no-ops
    source, said = source_for(decoder, media["cuts"].parent, "cuda:0")
    try:
        assert isinstance(source, MixedFrameSource)
        assert said == [("info", f"decoder {decoder}: NVDEC on cuda:0 (8 sessions) beside 2 ffmpeg decoder "
                                 f"process(es)")], said
    finally:
        source.close()


def test_without_nvdec_auto_says_so_and_nvdec_warns(monkeypatch, media):
    from shots.frames.mixed_source import MixedFrameSource

    def no_library():
        raise nvdec_source.NvdecUnavailable("no CUDA GPU")
    monkeypatch.setattr(nvdec_source, "load_library", no_library)
    for decoder, model_device, want in (
            ("auto", "cuda:0", [("info", "decoder auto: ffmpeg on the CPU (no CUDA GPU)")]),
            ("nvdec", "cuda:0", [("warning", "decoder 'nvdec': no CUDA GPU; decoding with ffmpeg on the CPU")]),
            ("auto", "cpu", []),   # a CPU model: nothing to say
            ("cpu", "cuda:0", [])):
        source, said = source_for(decoder, media["cuts"].parent, model_device)
        try:
            assert not isinstance(source, MixedFrameSource) and said == want, (decoder, model_device, said)
        finally:
            source.close()
