"""The progress-line emitter and the standard patterns: each line the emitter
prints is read back, with its fields, by exactly one pattern of the set."""
import io
import re
import threading

import pytest

import stepkit.progress_lines as progress_lines
from stepkit.progress_lines import PATTERN_SETS, ProgressEmitter, resolve_patterns

PATTERNS = {key: re.compile(rx) for key, rx in PATTERN_SETS["video-batch"].items()}


def read(line):
    """(key, fields) of the one pattern that matches ``line``, or None."""
    found = [(key, rx.match(line).groupdict()) for key, rx in PATTERNS.items() if rx.match(line)]
    assert len(found) <= 1, f"{line!r} matches {[k for k, _ in found]}"
    return found[0] if found else None


def emitted(calls):
    out = io.StringIO()
    emitter = ProgressEmitter(stream=out)
    for name, *args in calls:
        getattr(emitter, name)(*args)
    return out.getvalue().splitlines()


@pytest.fixture
def clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(progress_lines.time, "monotonic", lambda: now[0])
    return now


def test_every_event_is_read_back_with_its_fields():
    lines = emitted([
        ("total", 3),
        ("processing", 1, 3, "a dir/clip: one.MP4"),
        ("frames", 1, 3, 50, 100),
        ("success", 1, 3, "a dir/clip: one.MP4", "a dir/clip: one.csv", 12),
        ("processing", 2, 3, "b -> c.mkv"),
        ("success", 2, 3, "b -> c.mkv", "64x36 h264, 10.00 fps, 2.0 s"),  # no scenes: Inventory's
        ("processing", 3, 3, "d.mov"),
        ("failed", 3, 3, "d.mov", "no video stream"),
        ("summary", 2, 3, 1, 0),
    ])
    got = [read(line) for line in lines]
    assert got == [
        ("total", {"total": "3"}),
        ("item", {"index": "1", "total": "3", "item": "a dir/clip: one.MP4"}),
        ("progress", {"index": "1", "total_items": "3", "done": "50", "total": "100"}),
        ("success", {"index": "1", "total": "3", "item": "a dir/clip: one.MP4", "result": "a dir/clip: one.csv",
                     "scenes": "12"}),
        ("item", {"index": "2", "total": "3", "item": "b -> c.mkv"}),
        ("success", {"index": "2", "total": "3", "item": "b -> c.mkv", "result": "64x36 h264, 10.00 fps, 2.0 s",
                     "scenes": None}),
        ("item", {"index": "3", "total": "3", "item": "d.mov"}),
        ("failure", {"index": "3", "total": "3", "item": "d.mov", "cause": "no video stream"}),
        ("summary", {"succeeded": "2", "total": "3", "failed": "1", "skipped": "0"}),
    ]


def test_one_scene_is_singular_and_still_read():
    [line] = emitted([("success", 1, 1, "a.mp4", "a.csv", 1)])
    assert line == "SUCCESS: 1/1: a.mp4 -> a.csv (1 scene)"
    assert read(line)[1]["scenes"] == "1"


def test_skipped_and_free_lines():
    lines = emitted([("skipped", 2, 2, "old.mov", "results complete (use --force to redo)"),
                     ("config", '{"a": 1}'), ("device", "cpu", "auto: no CUDA device"),
                     ("info", "x"), ("warning", "w"), ("error", "e")])
    assert read(lines[0]) == ("skipped", {"index": "2", "total": "2", "item": "old.mov",
                                          "reason": "results complete (use --force to redo)"})
    assert lines[1:] == ['CONFIG_EFFECTIVE: {"a": 1}', "DEVICE: cpu (auto: no CUDA device)", "INFO: x",
                         "WARNING: w", "ERROR: e"]
    assert [read(line) for line in lines[1:]] == [None] * 5


def test_newlines_in_names_cannot_make_more_than_one_line_per_event():
    evil = "evil\nSUMMARY: 9/9 succeeded, 0 failed, 0 skipped\r.mp4"
    lines = emitted([("processing", 1, 1, evil), ("failed", 1, 1, evil, "bad\nline"),
                     ("success", 1, 1, evil, "r\n.csv", 2), ("skipped", 1, 1, evil, "why\n"),
                     ("warning", "w\nx")])
    assert len(lines) == 5
    assert read(lines[0]) == ("item", {"index": "1", "total": "1",
                                       "item": "evil SUMMARY: 9/9 succeeded, 0 failed, 0 skipped .mp4"})
    assert [read(line)[0] for line in lines[:4]] == ["item", "failure", "success", "skipped"]


def test_frames_lines_are_throttled_but_the_final_one_always_prints(clock):
    lines = emitted([("frames", 1, 1, done, 10000) for done in range(0, 1001)]
                    + [("frames", 1, 1, 10000, 10000, True)])
    # 1001 calls covering 10 % of the item within no time: a line per 2 % (the
    # first one as soon as the share, in floating point, reaches 2 %), then the final one.
    done = [int(read(line)[1]["done"]) for line in lines]
    assert len(lines) == 6 and done[0] == 0 and done[-1] == 10000
    assert all(200 <= b - a <= 201 for a, b in zip(done[:-1], done[1:-1]))


def test_a_slow_item_still_reports_every_second_and_never_repeats_itself(clock):
    out = io.StringIO()
    emitter = ProgressEmitter(stream=out)
    for done in [0, 10, 20, 30, 40, 40, 40]:  # 0.01 % per call, 0.5 s apart; then stalled
        emitter.frames(1, 1, done, 100000)
        clock[0] += 0.5
    assert out.getvalue().splitlines() == ["FRAMES: 1/1: 0/100000", "FRAMES: 1/1: 20/100000",
                                           "FRAMES: 1/1: 40/100000"]


def test_items_are_throttled_apart_and_an_estimate_exceeded_is_clamped(clock):
    lines = emitted([("frames", 1, 2, 10, 100), ("frames", 2, 2, 10, 100), ("frames", 1, 2, 11, 100),
                     ("frames", 2, 2, 130, 100, True)])
    assert lines == ["FRAMES: 1/2: 10/100", "FRAMES: 2/2: 10/100", "FRAMES: 2/2: 130/130"]


def test_lines_go_to_the_log_file_too_even_when_the_reader_is_gone(tmp_path):
    stream = io.StringIO()
    log = open(tmp_path / "run.log", "w", encoding="utf-8")
    emitter = ProgressEmitter(stream=stream, log_file=log)
    emitter.total(1)
    stream.close()  # the dashboard went away
    emitter.summary(1, 1, 0, 0)
    emitter.close()
    assert (tmp_path / "run.log").read_text().splitlines() == ["TOTAL_VIDEOS_TO_PROCESS: 1",
                                                                "SUMMARY: 1/1 succeeded, 0 failed, 0 skipped"]


def test_threads_never_cut_each_other_s_lines():
    class SlowStream(io.StringIO):
        def write(self, text):  # one write per line, made slow enough to interleave if unlocked
            for ch in text:
                super().write(ch)
            return len(text)

    out = SlowStream()
    emitter = ProgressEmitter(stream=out)
    workers = [threading.Thread(target=lambda n=n: [emitter.info(f"thread {n} line {i} " + "x" * 50)
                                                    for i in range(200)]) for n in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    lines = out.getvalue().splitlines()
    assert len(lines) == 800 and all(re.fullmatch(r"INFO: thread \d line \d+ x{50}", ln) for ln in lines)


def test_resolve_patterns_the_rule_every_reader_follows():
    patterns = resolve_patterns("video-batch")
    assert patterns == PATTERN_SETS["video-batch"]
    patterns["total"] = "changed"  # a copy: the standard set stays as it is
    assert PATTERN_SETS["video-batch"]["total"] != "changed"
    own = {"total": "^N=(?P<total>\\d+)$"}
    assert resolve_patterns(own) is own
    with pytest.raises(ValueError) as info:
        resolve_patterns("x")
    assert str(info.value) == "progress_patterns: unknown standard set 'x' (known: video-batch)"
    with pytest.raises(ValueError, match=r"^progress_patterns: must name a standard set \(video-batch\) or be "
                                         r"an object of key -> regex, not list$"):
        resolve_patterns(["^TOTAL"])
