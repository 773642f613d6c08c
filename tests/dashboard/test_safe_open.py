"""dashboard/safe_open.py: files a request names are opened inside their root
only, even while someone swaps folders for links."""
import os
import threading

import pytest

from dashboard.safe_open import OutsideRoot, open_inside, resolve_inside


@pytest.fixture
def tree(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "a.log").write_text("inside")
    (root / "a%41.log").write_text("percent")
    (outside / "a.log").write_text("SECRET")
    (root / "out").symlink_to(outside)
    (root / "in").symlink_to(root / "sub")
    return root, outside


def read(root, rel):
    with open_inside(root, rel) as f:
        return f.read().decode()


def test_files_and_links_that_stay_inside_open(tree):
    root, _ = tree
    assert read(root, "sub/a.log") == "inside"
    assert read(root, "in/a.log") == "inside"
    assert read(root, "a%41.log") == "percent"  # taken literally, not decoded again
    assert resolve_inside(root, "in/a.log") == (root / "sub" / "a.log").resolve()


@pytest.mark.parametrize("rel", ["out/a.log", "../outside/a.log", "/etc/passwd", "sub\\a.log", "sub/a.log\x00",
                                 "", "C:/x", "x/" * 3000])
def test_what_leads_out_or_is_malformed_is_refused(tree, rel):
    root, _ = tree
    with pytest.raises(OutsideRoot):
        read(root, rel)


def test_missing_folders_and_fifos(tree):
    root, _ = tree
    with pytest.raises(FileNotFoundError):
        read(root, "nope.log")
    with pytest.raises(FileNotFoundError):
        read(root, "sub/a.log/x")
    with pytest.raises(IsADirectoryError):
        read(root, "sub")
    os.mkfifo(root / "fifo.log")
    with pytest.raises(OutsideRoot, match="regular"):  # and it did not hang
        read(root, "fifo.log")


def test_a_folder_swapped_for_a_link_in_a_loop_never_serves_the_outside_file(tree):
    root, outside = tree
    real_sub, spare = root / "sub", root / "sub.real"
    stop = threading.Event()

    def swap():
        while not stop.is_set():
            os.rename(real_sub, spare)
            os.symlink(outside, real_sub)
            os.unlink(real_sub)
            os.rename(spare, real_sub)

    swapper = threading.Thread(target=swap)
    swapper.start()
    seen = {"inside": 0, "refused": 0, "missing": 0}
    try:
        for _ in range(3000):
            try:
                text = read(root, "sub/a.log")
            except OutsideRoot:
                seen["refused"] += 1
                continue
            except FileNotFoundError:
                seen["missing"] += 1
                continue
            assert text == "inside"
            seen["inside"] += 1
    finally:
        stop.set()
        swapper.join()
    assert seen["inside"] > 0 and seen["refused"] + seen["missing"] > 0, seen
