"""Video discovery: which files every step and the dashboard take, in which order."""
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stepkit.videos import (FolderError, find_videos, folder_videos, is_video_name, relative_name,
                            walk_videos)

# Root reads whatever the permissions say; without these two capabilities it
# meets them like anyone else (so the unreadable-folder tests hold as root too).
OBEY_PERMISSIONS = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                    "--bounding-set=-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else []


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def names(paths, root):
    return [p.relative_to(root).as_posix() for p in paths]


def discover_obeying_permissions(root):
    """find_videos(root) in a child process that cannot read a mode-000 folder:
    (videos found, folders reported unreadable) or the FolderError's message."""
    code = textwrap.dedent(f"""
        import json, sys
        from stepkit.videos import FolderError, find_videos
        reported = []
        try:
            found = find_videos({str(root)!r}, on_unreadable=lambda f, cause: reported.append([str(f), cause]))
        except FolderError as exc:
            print(json.dumps({{"error": str(exc)}}))
        else:
            print(json.dumps({{"found": [str(p) for p in found], "reported": reported}}))
    """)
    out = subprocess.run([*OBEY_PERMISSIONS, sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def locked(tmp_path):
    """Folders made unreadable in a test get their mode back, so tmp_path can be removed."""
    made = []

    def lock(folder):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0)
        made.append(folder)
        return folder

    yield lock
    for folder in made:
        folder.chmod(0o755)


def test_recursive_any_case_hidden_skipped_in_the_steps_order(tmp_path):
    for name in ["b/x.MP4", "a/y.mov", "a/z.txt", "c.MKV", ".hidden.mp4", ".cache/w.mp4", "d/e/f.WebM",
                 "g.m4v", "h.avi", "noext", "i.mp4.txt", "a/.j.mov"]:
        touch(tmp_path / name)
    # A folder's own videos by name, then its sub-folders by name (STEP3's item order).
    assert names(find_videos(tmp_path), tmp_path) == ["c.MKV", "g.m4v", "h.avi", "a/y.mov", "b/x.MP4",
                                                      "d/e/f.WebM"]
    assert list(walk_videos(tmp_path)) == find_videos(tmp_path)


def test_extensions_given_any_way_match_any_case(tmp_path):
    for name in ["a.MKV", "b.mkv", "c.mp4", "d.Mkv"]:
        touch(tmp_path / name)
    for extensions in ([".mkv"], ["MKV"], ["mkv"], (" .MkV ",)):
        assert names(find_videos(tmp_path, extensions), tmp_path) == ["a.MKV", "b.mkv", "d.Mkv"]
    assert is_video_name("X.WEBM") and not is_video_name(".x.webm") and not is_video_name("x.webm.part")


def test_linked_folders_are_followed_each_real_folder_once(tmp_path):
    root, elsewhere = tmp_path / "projects", tmp_path / "elsewhere"
    touch(root / "near.mp4")
    touch(elsewhere / "far.mp4")
    touch(elsewhere / "deeper" / "deep.mp4")
    (root / "link").symlink_to(elsewhere)
    (root / "again").symlink_to(elsewhere)  # the same folder by a second name
    (root / "loop").symlink_to(root)        # a link back up
    (elsewhere / "up").symlink_to(elsewhere / "deeper")  # and one inside the linked folder
    found = names(find_videos(root), root)
    assert found == ["near.mp4", "again/far.mp4", "again/deeper/deep.mp4"]


def test_a_loop_of_links_ends(tmp_path):
    touch(tmp_path / "a" / "one.mp4")
    touch(tmp_path / "b" / "two.mp4")
    (tmp_path / "a" / "to_b").symlink_to(tmp_path / "b")
    (tmp_path / "b" / "to_a").symlink_to(tmp_path / "a")
    assert names(find_videos(tmp_path), tmp_path) == ["a/one.mp4", "a/to_b/two.mp4"]


def test_a_linked_video_file_is_a_video(tmp_path):
    target = touch(tmp_path / "store" / "real.mov")
    (tmp_path / "projects").mkdir()
    (tmp_path / "projects" / "shown.mov").symlink_to(target)
    assert names(find_videos(tmp_path / "projects"), tmp_path / "projects") == ["shown.mov"]


def test_an_unreadable_sub_folder_is_reported_and_the_rest_found(tmp_path, locked):
    touch(tmp_path / "ok" / "v.mp4")
    touch(tmp_path / "top.mp4")
    touch(tmp_path / "secret" / "hidden_from_us.mp4")
    locked(tmp_path / "secret")
    got = discover_obeying_permissions(tmp_path)
    assert names(map(Path, got["found"]), tmp_path) == ["top.mp4", "ok/v.mp4"]
    assert got["reported"] == [[str(tmp_path / "secret"), "Permission denied"]]


def test_an_unreadable_root_raises_folder_error(tmp_path, locked):
    root = locked(tmp_path / "projects")
    got = discover_obeying_permissions(root)
    # One line naming the folder and the cause.
    assert re.fullmatch(rf"cannot read the (input )?folder {re.escape(str(root))}: Permission denied", got["error"])


def test_a_missing_root_raises_folder_error(tmp_path):
    with pytest.raises(FolderError, match=r"^cannot read the (input )?folder .*/nope: No such file or directory$"):
        find_videos(tmp_path / "nope")


def test_a_file_given_is_itself_and_names_are_relative_to_its_folder(tmp_path):
    video = touch(tmp_path / "d" / "one.mp4")
    assert find_videos(video) == [video]
    assert relative_name(video, video) == "one.mp4"
    assert relative_name(video, tmp_path) == "d/one.mp4"
    assert relative_name(tmp_path / "x.mp4", tmp_path / "d") == (tmp_path / "x.mp4").as_posix()


def test_folder_videos_are_the_folder_s_own(tmp_path):
    for name in ["a.mp4", "B.MOV", ".c.mp4", "d.txt", "sub/e.mp4"]:
        touch(tmp_path / name)
    assert sorted(p.name for p in folder_videos(tmp_path)) == ["B.MOV", "a.mp4"]
    assert folder_videos(tmp_path / "missing") == []
