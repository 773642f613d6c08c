"""The line splitter: a child's raw output bytes into clean text lines."""
from dashboard.lines import LineSplitter, strip_ansi


def split_all(chunks, **kw):
    s = LineSplitter(**kw)
    out = []
    for c in chunks:
        out += s.feed(c)
    return out + s.close()


def test_splits_on_newline_carriage_return_and_crlf():
    assert split_all([b"a\nb\rc\r\nd\n"]) == ["a", "b", "c", "d"]


def test_crlf_cut_between_two_chunks_is_one_break():
    assert split_all([b"one\r", b"\ntwo\n"]) == ["one", "two"]
    assert split_all([b"one\r", b"two\n"]) == ["one", "two"]


def test_last_line_without_newline_is_kept():
    assert split_all([b"first\nlast without newline"]) == ["first", "last without newline"]


def test_line_split_across_many_chunks():
    data = b"PROCESSING_VIDEO: 1/3: demo/sample.mp4\nFRAMES: 1/3: 10/20\n"
    assert split_all([data[i:i + 1] for i in range(len(data))]) == [
        "PROCESSING_VIDEO: 1/3: demo/sample.mp4", "FRAMES: 1/3: 10/20"]


def test_invalid_utf8_is_replaced_not_fatal():
    assert split_all([b"caf\xe9 \xff\n"]) == ["caf\ufffd \ufffd"]


def test_utf8_character_cut_between_chunks_survives():
    data = "café ✓\n".encode()
    cut = data.index("✓".encode()) + 1
    assert split_all([data[:cut], data[cut:]]) == ["café ✓"]


def test_ansi_escapes_are_stripped():
    assert strip_ansi("\x1b[1;31mERROR:\x1b[0m bad") == "ERROR: bad"
    assert strip_ansi("\x1b]0;title\x07text") == "text"
    assert split_all([b"\x1b[32mSUCCESS\x1b[0m\n"]) == ["SUCCESS"]


def test_endless_line_is_cut_so_memory_stays_bounded():
    lines = split_all([b"x" * 1000] * 10, max_line=2500)
    assert "".join(lines) == "x" * 10_000
    assert max(len(line) for line in lines) <= 3500
