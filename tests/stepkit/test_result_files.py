"""Result files: names, atomic writes, what counts as done, leftovers of a crash."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stepkit import scene_results as results
from stepkit.atomic import write_atomic
from stepkit.videos import find_videos


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_result_names_use_the_stem_unless_two_videos_share_it(tmp_path):
    a_mp4, a_mov, b = touch(tmp_path / "a.mp4"), touch(tmp_path / "a.mov"), touch(tmp_path / "b.mkv")
    siblings = [a_mp4, a_mov, b]
    assert results.result_paths(b, siblings) == results.ResultPaths(tmp_path / "b.csv", tmp_path / "b.scenes.json")
    pa, pb = results.result_paths(a_mp4, siblings), results.result_paths(a_mov, siblings)
    assert pa.csv.name == "a.mp4.csv" and pb.csv.name == "a.mov.csv"
    assert pa.json.name == "a.mp4.scenes.json" and pb.json.name == "a.mov.scenes.json"


def test_a_whole_name_equal_to_another_stem_does_not_clash(tmp_path):
    videos = [touch(tmp_path / n) for n in ("a.mp4", "a.mov", "a.mp4.mkv", "a.mp4.mkv.avi", "b.mp4")]
    names = [results.result_paths(v, videos).csv.name for v in videos]
    assert len(set(names)) == len(names), names
    assert names[-1] == "b.csv"
    jsons = [results.result_paths(v, videos).json.name for v in videos]
    assert len(set(jsons)) == len(jsons)


def test_stale_results_of_a_replaced_video_are_removed_valid_ones_kept(tmp_path):
    video, paths = complete_pair(tmp_path)
    assert results.remove_stale_results(video, paths) == []  # still describe the video
    assert paths.csv.exists() and paths.json.exists()
    video.write_bytes(b"a different, broken file")
    assert results.remove_stale_results(video, paths) == [paths.csv, paths.json]
    assert not paths.csv.exists() and not paths.json.exists()


def test_a_csv_someone_edited_is_not_removed_with_the_stale_json(tmp_path):
    video, paths = complete_pair(tmp_path)
    paths.csv.write_text("my own notes\n")
    video.write_bytes(b"changed")
    assert results.remove_stale_results(video, paths) == [paths.json]
    assert paths.csv.read_text() == "my own notes\n"


def test_find_videos_recursive_case_insensitive_sorted(tmp_path):
    for name in ["b/x.MP4", "a/y.mov", "a/z.txt", "c.MKV", ".hidden.mp4", ".cache/w.mp4", "d/e/f.WebM", "g.m4v"]:
        touch(tmp_path / name)
    found = [p.relative_to(tmp_path).as_posix() for p in
             find_videos(tmp_path, [".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"])]
    assert found == ["c.MKV", "g.m4v", "a/y.mov", "b/x.MP4", "d/e/f.WebM"]
    single = touch(tmp_path / "one.avi")
    assert find_videos(single, [".mp4"]) == [single]


def complete_pair(tmp_path, threshold=0.5):
    video = touch(tmp_path / "v.mp4", b"video bytes")
    paths = results.result_paths(video, [video])
    results.write_results(paths, [[1]], {"video": {"identity": results.video_identity(video)},
                                              "threshold": threshold})
    return video, paths


def test_complete_results_are_recognised(tmp_path):
    video, paths = complete_pair(tmp_path)
    assert results.is_complete(video, paths, 0.5)


def test_csv_without_its_json_is_not_done(tmp_path):
    video, paths = complete_pair(tmp_path)
    paths.json.unlink()
    assert not results.is_complete(video, paths, 0.5)


def test_changed_csv_changed_video_or_other_threshold_is_not_done(tmp_path):
    video, paths = complete_pair(tmp_path)
    assert not results.is_complete(video, paths, 0.4)
    paths.csv.write_text("No\n1\n2\n")
    assert not results.is_complete(video, paths, 0.5)
    video, paths = complete_pair(tmp_path)
    video.write_bytes(b"another video")
    assert not results.is_complete(video, paths, 0.5)


def test_truncated_json_is_not_done(tmp_path):
    video, paths = complete_pair(tmp_path)
    paths.json.write_text(paths.json.read_text()[:20])
    assert not results.is_complete(video, paths, 0.5)


def test_atomic_write_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "r.csv"
    target.write_text("old")
    write_atomic(target, b"new content")
    assert target.read_text() == "new content"
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "r.csv"
    target.write_text("old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left on device"):
        write_atomic(target, b"new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = touch(tmp_path / f".step3-tmp-{dead}-abc.part")
    mine = touch(tmp_path / f".step3-tmp-{os.getpid()}-def.part")
    other = touch(tmp_path / "keep.csv")
    assert results.remove_stale_temporaries([tmp_path]) == [stale]
    assert mine.exists() and other.exists() and not stale.exists()


def test_linked_folders_are_searched_once_and_loops_end(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    touch(elsewhere / "far.mp4")
    root = tmp_path / "projects"
    touch(root / "near.mp4")
    (root / "link").symlink_to(elsewhere)
    (root / "again").symlink_to(elsewhere)  # the same folder by a second name
    (root / "loop").symlink_to(root)        # a link back up
    found = [p.relative_to(root).as_posix() for p in find_videos(root, [".mp4"])]
    assert found == ["near.mp4", "again/far.mp4"]


def test_a_result_name_too_long_for_the_file_system_is_found_before_work(tmp_path):
    video = touch(tmp_path / ("L" * 245 + ".mp4"))
    paths = results.result_paths(video, [video])
    problem = results.name_problem(paths)
    assert problem is not None and "too long (257 bytes, the file system allows 255)" in problem
    short = touch(tmp_path / "ok.mp4")
    assert results.name_problem(results.result_paths(short, [short])) is None


def test_a_json_that_cannot_be_written_takes_its_csv_with_it(tmp_path, monkeypatch):
    """The CSV goes first; if the JSON (the completion marker) then fails, no
    lone CSV stays to be taken for the video's scenes."""
    video = touch(tmp_path / "v.mp4")
    paths = results.result_paths(video, [video])
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith(".json"):
            raise OSError(28, "No space left on device", src, None, dst)
        real_replace(src, dst)
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError) as info:
        results.write_results(paths, [[1]], {"threshold": 0.5})
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]
    assert results.describe_write_error(info.value) == "cannot write results: No space left on device (v.scenes.json)"


def test_a_write_error_on_a_temporary_names_the_folder(tmp_path):
    error = OSError(13, "Permission denied", str(tmp_path / f"{results.TEMP_PREFIX}12-abc.part"))
    assert results.describe_write_error(error) == f"cannot write results: Permission denied (in {tmp_path})"
