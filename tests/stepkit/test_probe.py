"""The probe: the real ffprobe's answer about files made here with ffmpeg, and
which of their streams every step analyses (never the cover art)."""
import json
import subprocess

import pytest

from stepkit.probe import ffprobe_command, last_error_line, select_video_stream, video_streams


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, timeout=60)


def probed(path):
    out = subprocess.run(ffprobe_command(path), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    ffmpeg("-f", "lavfi", "-i", "color=red:size=32x32", "-frames:v", "1", str(d / "cover.png"))
    video = ["-f", "lavfi", "-i", "testsrc=duration=1:size=64x36:rate=10"]
    sound = ["-f", "lavfi", "-i", "sine=duration=1"]
    # A song with its cover: the only "video" stream is a one-frame picture.
    ffmpeg(*sound, "-i", str(d / "cover.png"), "-map", "0:a", "-map", "1:v", "-c:a", "aac", "-c:v", "png",
           "-disposition:v:0", "attached_pic", str(d / "song.mp4"))
    # The same in Matroska, where a cover is an attachment ffprobe shows as a video stream.
    ffmpeg(*sound, "-attach", str(d / "cover.png"), "-metadata:s:t", "mimetype=image/png", "-c:a", "libvorbis",
           str(d / "song.mkv"))
    # A real video that also carries a cover.
    ffmpeg(*video, "-i", str(d / "cover.png"), "-map", "1:v", "-map", "0:v", "-c:v:0", "png",
           "-c:v:1", "libx264", "-pix_fmt", "yuv420p", "-disposition:v:0", "attached_pic",
           "-disposition:v:1", "default", str(d / "covered.mp4"))
    ffmpeg(*video, "-pix_fmt", "yuv420p", str(d / "plain.mp4"))
    return d


def test_a_file_whose_only_video_is_its_cover_has_no_video(media):
    for name in ("song.mp4", "song.mkv"):
        answer = probed(media / name)
        covers = [s for s in answer["streams"] if s["codec_type"] == "video"]
        assert len(covers) == 1 and covers[0]["disposition"]["attached_pic"] == 1, name  # what ffprobe says
        assert video_streams(answer) == [] and select_video_stream(answer) is None, name


def test_the_video_is_chosen_not_the_cover_whatever_the_order(media):
    answer = probed(media / "covered.mp4")
    chosen = select_video_stream(answer)
    assert (chosen["codec_name"], chosen["width"], chosen["height"]) == ("h264", 64, 36)
    # Containers list streams in their own order; with the cover first the choice is the same.
    answer["streams"].sort(key=lambda s: -s["disposition"]["attached_pic"])
    assert answer["streams"][0]["codec_name"] == "png"
    assert select_video_stream(answer)["codec_name"] == "h264"
    assert [s["codec_name"] for s in video_streams(answer)] == ["h264"]


def test_a_plain_video_and_answers_without_streams(media):
    assert select_video_stream(probed(media / "plain.mp4"))["codec_name"] == "h264"
    # Answers of an odd file (no streams, a stream without its disposition) are no crash.
    assert video_streams({}) == [] and video_streams({"streams": None}) == []
    bare = {"codec_type": "video", "disposition": None}
    assert video_streams({"streams": ["junk", bare]}) == [bare]


@pytest.mark.parametrize("name", ["a:b.mp4", "-starts-with-dash.mp4"])
def test_awkward_names_are_read_as_files(media, tmp_path, name, monkeypatch):
    # Relative on purpose: "a:b.mp4" would be a protocol, "-x" an option, if passed as they are.
    (tmp_path / name).write_bytes((media / "plain.mp4").read_bytes())
    monkeypatch.chdir(tmp_path)
    assert select_video_stream(probed(name))["width"] == 64


def test_ffprobe_s_last_error_without_the_file_name(tmp_path):
    broken = tmp_path / "broken clip.mp4"
    broken.write_bytes(b"\x00garbage" * 100)
    out = subprocess.run(ffprobe_command(broken), capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert str(broken) in out.stderr  # ffprobe names the file...
    message = last_error_line(out.stderr, broken)
    assert message == "Invalid data found when processing input"  # ...the step says it once, itself
    assert last_error_line("", broken) == "" and last_error_line("a\n\nlast one\n", broken) == "last one"
