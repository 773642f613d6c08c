"""The progress-line parser: the splitter, the patterns, the state, the registry."""
import json
import re
import shutil
import subprocess

import pytest
from dash_support import ROOT, protocol_patterns, sample_lines, step, write_workflow

from dashboard.lines import LineSplitter, strip_ansi
from dashboard.progress import LineMatcher, PatternError, ProgressState, compile_patterns
from dashboard.registry import load_registry


def matcher() -> LineMatcher:
    return LineMatcher(compile_patterns(protocol_patterns()))


# ---- the splitter ---------------------------------------------------------

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


# ---- the patterns against the contract's sample lines ----------------------

EXPECTED = {
    "TOTAL_VIDEOS_TO_PROCESS: 3": ("total", {"total": "3"}),
    "PROCESSING_VIDEO: 1/3: demo/sample.mp4": ("item", {"index": "1", "total": "3", "item": "demo/sample.mp4"}),
    "FRAMES: 1/3: 2650/5301": ("progress", {"index": "1", "done": "2650", "total": "5301"}),
    "SUCCESS: 1/3: demo/sample.mp4 -> demo/sample.csv (108 scenes)": (
        "success", {"index": "1", "item": "demo/sample.mp4", "result": "demo/sample.csv", "scenes": "108"}),
    "FAILED: 2/3: demo/broken clip.mp4: cannot read video: Invalid data found when processing input": (
        "failure", {"index": "2", "item": "demo/broken clip.mp4",
                    "cause": "cannot read video: Invalid data found when processing input"}),
    "SKIPPED: 3/3: demo/old.mov: results complete (use --force to redo)": (
        "skipped", {"index": "3", "item": "demo/old.mov"}),
    "SUMMARY: 1/3 succeeded, 1 failed, 1 skipped": (
        "summary", {"succeeded": "1", "total": "3", "failed": "1", "skipped": "1"}),
}


def test_every_field_of_the_sample_table():
    lines = sample_lines()
    m = matcher()
    for line, (key, fields) in EXPECTED.items():
        assert line in lines, f"the sample block no longer holds {line!r}"
        found = m.match(line)
        assert found is not None and found[0] == key, line
        for name, value in fields.items():
            assert found[1][name] == value, (line, name)


def test_lines_without_a_pattern_are_plain_log_lines():
    m = matcher()
    for line in sample_lines():
        if line.startswith(("CONFIG_EFFECTIVE", "DEVICE", "WARNING")):
            assert m.match(line) is None, line


def test_sample_run_gives_the_summary_state():
    state = ProgressState()
    m = matcher()
    fractions = []
    for line in sample_lines():
        found = m.match(line)
        if found:
            state.apply(*found)
            fractions.append(state.fraction)
    assert (state.total, state.succeeded, state.failed, state.skipped) == (3, 1, 1, 1)
    assert state.fraction == 1.0
    assert fractions == sorted(fractions), "the bar went backwards"
    assert state.failures[0].item == "demo/broken clip.mp4"
    assert state.failures[0].detail.startswith("cannot read video")
    assert state.last_success.detail == "demo/sample.csv (108 scenes)"


def test_fraction_is_smooth_items_done_plus_the_current_item():
    state = ProgressState()
    m = matcher()
    for line in ["TOTAL_VIDEOS_TO_PROCESS: 4", "PROCESSING_VIDEO: 1/4: a.mp4", "FRAMES: 1/4: 50/100"]:
        state.apply(*m.match(line))
    assert state.fraction == pytest.approx(0.125)
    for line in ["SUCCESS: 1/4: a.mp4 -> a.csv (3 scenes)", "PROCESSING_VIDEO: 2/4: b.mp4", "FRAMES: 2/4: 25/100"]:
        state.apply(*m.match(line))
    assert state.fraction == pytest.approx((1 + 0.25) / 4)
    assert (state.index, state.item, state.item_done, state.item_total) == (2, "b.mp4", 25, 100)


def test_items_in_progress_at_once_all_count():
    """STEP3 decodes several videos in parallel: their FRAMES lines interleave."""
    state = ProgressState()
    m = matcher()
    for line in ["TOTAL_VIDEOS_TO_PROCESS: 4", "PROCESSING_VIDEO: 1/4: a.mp4", "PROCESSING_VIDEO: 2/4: b.mp4",
                 "FRAMES: 1/4: 50/100", "FRAMES: 2/4: 20/100"]:
        state.apply(*m.match(line))
    assert state.fraction == pytest.approx((0.5 + 0.2) / 4)
    assert state.in_progress == 2
    state.apply(*m.match("SUCCESS: 2/4: b.mp4 -> b.csv (1 scene)"))
    assert state.fraction == pytest.approx((1 + 0.5) / 4)
    # The item shown was done: the card moves to the one still in progress.
    assert (state.index, state.item, state.item_done, state.item_total) == (1, "a.mp4", 50, 100)
    assert state.in_progress == 1


def test_frame_count_beyond_the_estimate_is_clamped():
    state = ProgressState()
    m = matcher()
    for line in ["TOTAL_VIDEOS_TO_PROCESS: 2", "PROCESSING_VIDEO: 1/2: a.mp4", "FRAMES: 1/2: 130/100"]:
        state.apply(*m.match(line))
    assert state.fraction == pytest.approx(0.5)


def test_a_growing_estimate_never_moves_the_bar_back():
    state = ProgressState()
    m = matcher()
    for line in ["TOTAL_VIDEOS_TO_PROCESS: 1", "PROCESSING_VIDEO: 1/1: a.mp4", "FRAMES: 1/1: 90/100"]:
        state.apply(*m.match(line))
    state.apply(*m.match("FRAMES: 1/1: 91/200"))
    assert state.fraction == pytest.approx(0.9)


def test_an_item_counts_once_however_many_lines_name_it():
    state = ProgressState()
    m = matcher()
    for line in ["TOTAL_VIDEOS_TO_PROCESS: 1", "PROCESSING_VIDEO: 1/1: a.mp4",
                 "SUCCESS: 1/1: a.mp4 -> a.csv (3 scenes)", "SUCCESS: 1/1: a.mp4 -> a.scenes.json (3 scenes)"]:
        state.apply(*m.match(line))
    assert state.succeeded == 1


def test_name_with_separators_comes_from_the_item_line():
    name = "demo/take: 2 -> final (1 scenes).mp4"
    state = ProgressState()
    m = matcher()
    for line in ["TOTAL_VIDEOS_TO_PROCESS: 1", f"PROCESSING_VIDEO: 1/1: {name}",
                 f"FAILED: 1/1: {name}: cannot read video: moov atom not found"]:
        state.apply(*m.match(line))
    assert state.item == name
    assert state.failures[0].item == name


def test_no_total_means_no_fraction_until_it_ends():
    state = ProgressState()
    assert state.fraction is None
    state.complete()
    assert state.fraction == 1.0


# ---- pattern and registry validation --------------------------------------

@pytest.mark.parametrize("patterns, message", [
    ({"total": "^TOTAL: (?P<total>\\d+"}, "progress_patterns.total: bad regex"),
    ({"item": "^ITEM: (?P<name>.+)$"}, "needs the named group(s) item"),
    ({"progress": "^F: (?P<done>\\d+)$"}, "needs the named group(s) total"),
    ({"percent": "^P: (?P<p>\\d+)$"}, "unknown key"),
])
def test_bad_patterns_are_one_clear_line(patterns, message):
    with pytest.raises(PatternError, match=re.escape(message)):
        compile_patterns(patterns)


def test_registry_reports_each_problem_on_its_step(tmp_path):
    steps = [
        step("good", "progress.py"),
        step("badregex", "progress.py", progress_patterns={"total": "("}),
        step("badvenv", "progress.py", venv="nope_env"),
        step("noscript", "does_not_exist.py"),
        step("nocwd", "progress.py", cwd="no/such/folder"),
        step("badplace", "progress.py", "{home}"),
        step("Bad Id", "progress.py"),
        step("good", "progress.py"),
    ]
    steps.append(step("ghost", "progress.py", venv="ghost_env"))
    reg = load_registry(write_workflow(tmp_path / "wf.json", steps, {"env": {}, "ghost_env": {"setup": "make ghost"}}), ROOT)
    problems = {s.id: list(s.problems) + reg.readiness(s)[0] for s in reg.steps}
    assert reg.readiness(reg.get("good"))[0] == []
    assert any("bad regex" in p for p in problems["badregex"])
    assert any("venv 'nope_env' is unknown" in p for p in problems["badvenv"])
    assert any("does_not_exist.py does not exist" in p for p in problems["noscript"])
    assert any("working folder no/such/folder does not exist" in p for p in problems["nocwd"])
    assert any("unknown placeholder {home}" in p for p in problems["badplace"])
    assert any("must be lower-case" in p for p in problems["step-7"])
    assert any("good: the id is used by an earlier step" in p for p in problems["step-8"])
    ghost_problems, fix = reg.readiness(reg.get("ghost"))
    assert fix == "make ghost"
    assert "virtualenv ghost_env/ is missing" in ghost_problems[0] and "make ghost" in ghost_problems[0]
    for plist in problems.values():
        for p in plist:
            assert "\n" not in p


@pytest.mark.parametrize("content, message", [
    (None, "file not found"),
    ("{not json", "cannot read it as JSON"),
    ('{"steps": 3}', "expected an object with a \"steps\" list"),
])
def test_unreadable_workflow_file_is_one_line(tmp_path, content, message):
    path = tmp_path / "wf.json"
    if content is not None:
        path.write_text(content)
    reg = load_registry(path, ROOT)
    assert reg.steps == [] and len(reg.problems) == 1 and message in reg.problems[0]


def test_the_real_workflow_file_is_valid():
    reg = load_registry(ROOT / "config" / "workflow.json", ROOT)
    assert reg.problems == []
    assert {s.id for s in reg.steps} >= {"step3"}
    for s in reg.steps:
        assert s.problems == (), s.problems
    step3 = reg.get("step3")
    assert step3.venv == "transnet_env" and "gpu" in step3.resources


# ---- real STEP3 output -----------------------------------------------------

def test_real_step3_output_parses(tmp_path):
    """STEP3's dry run prints the lines it would print for real; they must parse."""
    python = ROOT / "transnet_env" / "bin" / "python"
    assert python.exists(), "transnet_env is missing: run make setup"
    projects = tmp_path / "projects" / "demo"
    projects.mkdir(parents=True)
    shutil.copy(ROOT / "projects" / "demo" / "sample.mp4", projects / "sample.mp4")
    out = subprocess.run(
        [str(python), str(ROOT / "workflow_scripts/step3/run_transnet.py"), "--input-dir", str(tmp_path / "projects"),
         "--dry-run", "--log-dir", str(tmp_path / "logs")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    m = matcher()
    state = ProgressState()
    keys = []
    for line in out.stdout.splitlines():
        found = m.match(line)
        if found:
            keys.append(found[0])
            state.apply(*found)
    assert keys[:2] == ["total", "item"]
    assert state.total == 1 and state.item == "demo/sample.mp4"
    config_line = next(line for line in out.stdout.splitlines() if line.startswith("CONFIG_EFFECTIVE: "))
    assert json.loads(config_line.split(": ", 1)[1])["dry_run"] is True


def test_a_real_step3_run_on_several_videos_parses(tmp_path):
    """A real run (model included) on videos decoded side by side: lines of
    different items interleave; names hold the separators; an extension the
    default list lacks (.mpg). The state must follow every item by its index."""
    python = ROOT / "transnet_env" / "bin" / "python"
    assert python.exists(), "transnet_env is missing: run make setup"
    folder = tmp_path / "projects"
    folder.mkdir()
    for name, codec in (("a: b -> c.mp4", "libx264"), ("plain.mpg", "mpeg2video"), ("x.mp4", "libx264")):
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=5",
                        "-c:v", codec, str(folder / name)], check=True)
    (folder / "broken.mp4").write_bytes(b"\x00\x01not a video" * 1000)
    out = subprocess.run(
        [str(python), str(ROOT / "workflow_scripts/step3/run_transnet.py"), "--input-dir", str(folder),
         "--log-dir", str(tmp_path / "logs"), "--num-workers", "2", "--extensions", ".mp4,.mpg"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    m = matcher()
    state = ProgressState()
    fractions, unmatched = [], []
    for line in out.stdout.splitlines():
        keyword = line.split(":", 1)[0]
        found = m.match(line)
        if found:
            state.apply(*found)
            fractions.append(state.fraction)
        elif keyword in ("TOTAL_VIDEOS_TO_PROCESS", "PROCESSING_VIDEO", "FRAMES", "SUCCESS", "FAILED", "SKIPPED",
                         "SUMMARY"):
            unmatched.append(line)
    assert unmatched == []
    assert (state.total, state.succeeded, state.failed, state.skipped) == (4, 3, 1, 0)
    assert sorted(state.names.values()) == ["a: b -> c.mp4", "broken.mp4", "plain.mpg", "x.mp4"]
    assert [(f.item, f.detail) for f in state.failures] == [
        ("broken.mp4", "cannot read video: Invalid data found when processing input")]
    assert state.last_success.detail.endswith(" scenes)") or state.last_success.detail.endswith(" scene)")
    numbers = [f for f in fractions if f is not None]
    assert numbers == sorted(numbers), "the bar went backwards"
    assert numbers[-1] == 1.0
