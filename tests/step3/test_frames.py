"""The decoder gives the official inference's frames, counted as decoded, with
their real timestamps; bad files fail with a clear cause."""
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import ffmpeg, reference_frames
from shots.frames.ffmpeg_reader import FrameReader
from shots.frames.messages import MemoryChunk
from shots.frames.probe import DecodeError, probe
from shots.frames.segments import WHOLE_VIDEO, plan_video
from shots.video_job import VideoJob


def decode_all(path: Path, threads=None):
    """A video decoded in one piece, as a decoder process and then its job do
    it: frames and timestamps (from the first frame's), the whole checked."""
    info = probe(path)
    reader = FrameReader(info, threads=threads, chunk=97)  # a chunk size that doesn't divide anything
    job = VideoJob(1, path, path.name, paths=None)
    job.planned(info, [WHOLE_VIDEO])
    while (chunk := reader.read()) is not None:
        job.segments[0].chunks.append(MemoryChunk(chunk))
    report = job.segments[0].report = reader.finish()
    frames = []
    while (chunk := job.next_chunk()) is not None:
        frames.append(chunk.take())
    assert job.advance() is not None  # the end of the video: raises DecodeError if cut short
    report.timestamps = job.timestamps
    return info, np.concatenate(frames), report


def test_frames_equal_official_ffmpeg_command_on_sample(sample_video):
    info, frames, report = decode_all(sample_video)
    ref = reference_frames(sample_video)
    assert frames.shape == ref.shape == (5301, 27, 48, 3)
    diff = np.abs(frames.astype(int) - ref.astype(int)).max()
    print(f"max pixel difference vs ffmpeg -s 48x27: {diff}")
    assert diff == 0
    assert report.frame_count == 5301
    assert info.fps == 25.0 and info.expected_frames == 5301
    # Constant 25 fps: frame i at i / 25 s.
    assert np.allclose(report.timestamps, np.arange(5301) / 25.0, atol=1e-6)


def test_frames_equal_official_command_on_full_hd(tmp_path, sample_video):
    """Also with the thread counts the decoder processes choose: decoding and
    the scaler's slices on 1, 2 or 4 threads must not change a pixel."""
    hd = tmp_path / "hd.mkv"
    ffmpeg("-i", str(sample_video), "-t", "4", "-vf", "scale=1920:1080", "-c:v", "libx264", "-preset",
           "ultrafast", str(hd))
    ref = reference_frames(hd)
    for threads in (None, 1, 2, 4):
        _, frames, _ = decode_all(hd, threads)
        assert frames.shape == ref.shape
        assert np.array_equal(frames, ref), f"threads={threads}"


def test_variable_frame_rate_counts_decoded_frames_with_their_timestamps(tmp_path):
    # 50 frames at 25 fps, then 50 at 10 fps: timestamps jump, no frame repeats.
    vfr = tmp_path / "vfr.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=2",
           "-f", "lavfi", "-i", "mandelbrot=size=160x90:rate=10,trim=duration=5",
           "-filter_complex", "[0]settb=1/1000[a];[1]settb=1/1000[b];[a][b]concat=n=2:v=1:a=0,format=yuv420p",
           "-fps_mode", "passthrough", "-c:v", "libx264", "-preset", "ultrafast", str(vfr))
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                            "frame=pts_time", "-of", "csv=p=0", str(vfr)],
                           capture_output=True, text=True, check=True).stdout.split()
    truth = [float(t.strip(",")) for t in probe]
    _, frames, report = decode_all(vfr)
    assert report.frame_count == len(truth) == frames.shape[0] == 100
    assert np.allclose(report.timestamps, np.array(truth) - truth[0], atol=1e-3)
    # The official command would have resampled to a constant rate: more frames.
    assert reference_frames(vfr).shape[0] > 100


@pytest.mark.parametrize("maker, cause", [
    (lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
    (lambda p: p.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes()),
     "cannot read video: Invalid data found when processing input"),
])
def test_unreadable_files_fail_at_probe(tmp_path, maker, cause):
    path = tmp_path / "bad.mp4"
    maker(path)
    with pytest.raises(DecodeError) as info:
        probe(path)
    assert str(info.value) == cause


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "audio.mp4"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "aac", str(path))
    with pytest.raises(DecodeError, match="no video stream"):
        probe(path)


def test_truncated_file_fails_instead_of_giving_half_a_result(tmp_path, sample_video):
    full = tmp_path / "full.mkv"
    ffmpeg("-i", str(sample_video), "-t", "40", "-c", "copy", str(full))
    cut = tmp_path / "cut.mkv"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    probe(cut)  # the header is intact: the damage shows only while decoding
    with pytest.raises(DecodeError, match=r"truncated or damaged: decoding stopped at \d+\.\d s of 40\.\d s"):
        decode_all(cut)


# -- files that start late, odd containers, odd names (found by a stress run) ---------
def offset_clip(path: Path, offset: float, seconds: int = 4, size: str = "160x90", gop: int = 25) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}", "-c:v", "libx264",
           "-preset", "ultrafast", "-g", str(gop), "-pix_fmt", "yuv420p", "-output_ts_offset", str(offset),
           str(path))
    return path


@pytest.mark.parametrize("container", ["mkv", "mp4", "ts"])
def test_a_file_that_starts_late_is_whole_not_truncated(tmp_path, container):
    """Matroska declares the end timestamp as its duration: 14 s for 4 s of
    video starting at 10 s. The decoded 100 frames must pass as complete."""
    clip = offset_clip(tmp_path / f"late.{container}", 10)
    info, frames, report = decode_all(clip)
    assert report.frame_count == frames.shape[0] == 100
    assert info.start_time >= 10.0
    assert info.duration == pytest.approx(4.0, abs=0.1)
    assert info.expected_frames == pytest.approx(100, abs=3)
    assert np.array_equal(frames, reference_frames(clip))


def test_segments_of_a_file_that_starts_late_are_its_frames(tmp_path):
    """ffmpeg seeks from the file's first timestamp: each segment must start
    on its own keyframe and the segments together be the whole video."""
    clip = offset_clip(tmp_path / "late.mp4", 100, seconds=12, gop=50)
    info, segments = plan_video(clip, split_frames=100)
    assert len(segments) >= 3
    whole = decode_all(clip)[1]
    parts, stamps = [], []
    for seg in segments:
        # As the decoder processes run them: every segment keeps the file's timestamps.
        reader = FrameReader(info, threads=1, start=seg.start, max_frames=seg.frames, absolute=True)
        chunks = []
        while (chunk := reader.read()) is not None:
            chunks.append(chunk)
        report = reader.finish()
        assert report.frame_count == (seg.frames or 300 - seg.first)
        if seg.start is not None:
            assert report.timestamps[0] == pytest.approx(seg.start, abs=1e-3)
        parts.append(np.concatenate(chunks))
        stamps += report.timestamps
    assert np.array_equal(np.concatenate(parts), whole)
    # The segments join up: 300 frames 1/25 s apart from the file's first timestamp.
    assert np.allclose(stamps, info.start_time + np.arange(300) / 25.0, atol=1e-3)


def test_a_timestamp_jump_in_mpeg_ts_is_no_truncation(tmp_path):
    """MPEG-TS only estimates its duration (here from timestamps 500 s apart);
    ffmpeg makes the jump continuous, so the decoded span is short."""
    a = offset_clip(tmp_path / "a.ts", 1, seconds=3)
    b = offset_clip(tmp_path / "b.ts", 500, seconds=3)
    joined = tmp_path / "jump.ts"
    joined.write_bytes(a.read_bytes() + b.read_bytes())
    info, frames, report = decode_all(joined)
    assert not info.declares_duration
    assert report.frame_count == 150


def test_variable_frame_rate_output_is_not_a_decoding_error(tmp_path):
    # 10 fps then 30 fps: the rawvideo muxer logs equal timestamps as errors.
    parts = []
    for i, rate in enumerate((10, 30)):
        parts.append(tmp_path / f"p{i}.mp4")
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=160x90:rate={rate}:duration=2", "-c:v", "libx264",
               "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(parts[-1]))
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"file '{p}'\n" for p in parts))
    vfr = tmp_path / "vfr.mp4"
    ffmpeg("-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(vfr))
    _, frames, report = decode_all(vfr)
    assert frames.shape[0] == 80
    assert report.error_count == 0, report.error_messages


def test_a_named_pipe_or_device_is_not_a_video(tmp_path):
    import os
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    with pytest.raises(DecodeError, match=r"^not a regular file \(a named pipe\)$"):
        probe(fifo)
    device = tmp_path / "zero.mp4"
    device.symlink_to("/dev/zero")
    with pytest.raises(DecodeError, match=r"^not a regular file \(a device\)$"):
        probe(device)


def test_a_relative_name_with_a_colon_is_a_file_not_a_protocol(tmp_path, monkeypatch, sample_video):
    ffmpeg("-i", str(sample_video), "-t", "2", "-c", "copy", str(tmp_path / "file:clip.mp4"))
    monkeypatch.chdir(tmp_path)
    _, frames, _ = decode_all(Path("file:clip.mp4"))
    assert frames.shape[0] > 0 and np.array_equal(frames, reference_frames(tmp_path / "file:clip.mp4"))


def test_a_folder_is_not_a_video(tmp_path):
    (tmp_path / "x.mp4").mkdir()
    with pytest.raises(DecodeError, match=r"^not a regular file \(a folder\)$"):
        probe(tmp_path / "x.mp4")


def test_a_decoder_whose_pipe_ended_but_that_lingers_is_killed_and_replaced():
    """Its pipe ended (it will never send again) yet the process has not
    exited: after a grace period it is killed, its task fails in one line
    and a fresh decoder takes its place, instead of the task waiting for ever."""
    import time
    from shots.frames.ffmpeg_source import EXIT_GRACE_S, FfmpegFrameSource
    from shots.frames.messages import TaskFailed
    source = FfmpegFrameSource(1)
    try:
        old = source._decoders[0]
        assert old.process.is_alive()
        old.busy_with, old.exited_at = 7, time.monotonic() - EXIT_GRACE_S - 1
        failed = [m for m in source.poll(0) if isinstance(m, TaskFailed)]
        assert [m.task_id for m in failed] == [7] and "decoder process died" in failed[0].cause
        assert not old.process.is_alive() and source._decoders[0] is not old
        assert source._decoders[0].process.is_alive() and source.idle(1) == 1
    finally:
        source.close()


def test_a_decoder_that_died_idle_is_replaced_when_given_a_task(tmp_path):
    """Killed while idle, before any poll read its pipe: idle() still counts
    it, and each task submitted is decoded all the same (the dead one is
    replaced on the spot), so no healthy video fails for it."""
    import time
    from shots.frames.ffmpeg_source import FfmpegFrameSource
    from shots.frames.messages import DecodeTask, FramesReady, TaskDone
    clip = tmp_path / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=2", "-c:v", "libx264", str(clip))
    info, _ = plan_video(clip)
    source = FfmpegFrameSource(2)
    try:
        dead = source._decoders[0]
        dead.process.kill()
        dead.process.join(10)
        assert source.idle(2) == 2
        for task_id in (1, 2):
            source.submit(DecodeTask(task_id, info, WHOLE_VIDEO))
        frames, done, deadline = {1: 0, 2: 0}, {}, time.monotonic() + 60
        while len(done) < 2 and time.monotonic() < deadline:
            for message in source.poll(0.1):
                if isinstance(message, FramesReady):
                    frames[message.task_id] += len(message.chunk.take())
                elif isinstance(message, TaskDone):
                    done[message.task_id] = message.report.frame_count
                else:
                    pytest.fail(f"unexpected {message}")
        assert done == {1: 50, 2: 50} and frames == done
        assert dead not in source._decoders
    finally:
        source.close()
