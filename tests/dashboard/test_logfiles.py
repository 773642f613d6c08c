"""Reading logs from the end: big files, filters, follow, levels."""
import os
import time

import pytest

from dashboard import logfiles


def write(path, text, mtime=None):
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_tail_returns_the_last_lines_in_order(tmp_path):
    path = write(tmp_path / "a.log", "".join(f"line {i}\n" for i in range(1000)))
    data = logfiles.tail(path, 3)
    assert data["lines"] == ["line 997", "line 998", "line 999"]
    assert data["end"] == data["size"] == path.stat().st_size
    assert logfiles.tail(path, 5000)["lines"][0] == "line 0"


def test_tail_across_block_boundaries_and_empty_lines(tmp_path):
    long = "x" * (logfiles.BLOCK + 10)
    path = write(tmp_path / "a.log", f"first\n\n{long}\nlast\n")
    assert logfiles.tail(path, 10)["lines"] == ["first", "", long, "last"]


def test_a_one_gigabyte_log_opens_at_its_end(tmp_path):
    path = tmp_path / "huge.log"
    with open(path, "wb") as f:
        f.write(b"the very first line\n")
        f.truncate(1 << 30)  # 1 GiB, sparse: only the end is read anyway
        f.seek(1 << 30)
        f.write(b"".join(b"tail line %d\n" % i for i in range(500)))
    data = logfiles.tail(path, 200)
    assert data["lines"][-1] == "tail line 499" and len(data["lines"]) == 200
    assert data["size"] > 1 << 30
    # A filter that matches nothing stops at its budget instead of reading 1 GiB.
    keep = logfiles.make_filter("the very first", "all")
    data = logfiles.tail(path, 10, keep, scan_budget=8 << 20)
    assert data["lines"] == [] and data["complete"] is False


def test_filters_by_text_and_level(tmp_path):
    path = write(tmp_path / "a.log", "\n".join([
        "PROCESSING_VIDEO: 1/2: a.mp4", "WARNING: a.mp4: 3 decoding errors", "FAILED: 2/2: b.mp4: broken",
        "ERROR: weights missing", "2025-01-01 10:00:00,123 WARNING dashboard: slow", "plain line with error inside",
    ]) + "\n")
    only = lambda text, level: logfiles.tail(path, 100, logfiles.make_filter(text, level))["lines"]  # noqa: E731
    assert only("", "error") == ["FAILED: 2/2: b.mp4: broken", "ERROR: weights missing"]
    assert only("", "warning") == ["WARNING: a.mp4: 3 decoding errors", "FAILED: 2/2: b.mp4: broken",
                                  "ERROR: weights missing", "2025-01-01 10:00:00,123 WARNING dashboard: slow"]
    assert only("A.MP4", "all") == ["PROCESSING_VIDEO: 1/2: a.mp4", "WARNING: a.mp4: 3 decoding errors"]
    assert only("a.mp4", "error") == []
    assert logfiles.make_filter("", "all") is None


def test_follow_reads_what_was_added(tmp_path):
    path = write(tmp_path / "a.log", "one\ntwo\n")
    end = logfiles.tail(path, 10)["end"]
    with open(path, "a") as f:
        f.write("three\nfour (still being writ")
    data = logfiles.read_after(path, end)
    assert data["lines"] == ["three"]
    with open(path, "a") as f:
        f.write("ten)\n")
    assert logfiles.read_after(path, data["end"])["lines"] == ["four (still being written)"]


def test_follow_notices_a_rotated_file(tmp_path):
    path = write(tmp_path / "a.log", "x\n" * 100)
    end = logfiles.tail(path, 1)["end"]
    write(path, "new file\n")
    assert logfiles.read_after(path, end)["reset"] is True


def test_follow_skips_ahead_when_far_behind(tmp_path):
    path = write(tmp_path / "a.log", "")
    write(path, "".join(f"line {i}\n" for i in range(300_000)))
    data = logfiles.read_after(path, 0, max_bytes=100_000)
    assert data["skipped"] > 0 and data["lines"][-1] == "line 299999"
    assert data["lines"][0].startswith("line ") and data["end"] == path.stat().st_size


def test_an_unfinished_last_line_waits_while_the_file_is_written(tmp_path):
    path = write(tmp_path / "a.log", "done\nhalf a li")
    assert logfiles.tail(path, 10)["lines"] == ["done"]
    assert logfiles.tail(path, 10)["end"] == len("done\n")
    # A file nobody writes any more shows its last line even without a newline.
    os.utime(path, (time.time() - 60, time.time() - 60))
    assert logfiles.tail(path, 10)["lines"] == ["done", "half a li"]


def test_invalid_utf8_in_a_log_is_shown_not_fatal(tmp_path):
    path = write(tmp_path / "a.log", b"caf\xe9\n\xff\xfe\n")
    assert logfiles.tail(path, 10)["lines"] == ["caf\ufffd", "\ufffd\ufffd"]


@pytest.mark.parametrize("name", ["", "\x00", "a\x00b"])
def test_empty_or_nul_paths_are_refused(tmp_path, name):
    with pytest.raises(logfiles.UnsafePath):
        logfiles.open_log(tmp_path, name)
