"""progress_patterns in config/workflow.json: the name of a standard set of
stepkit.progress_lines (both steps say "video-batch"), or a step's own regexes;
a wrong value is one line on that step's card. The dashboard's side of the
progress-line contract: the patterns the registry gives a step read the
documented sample and the lines stepkit's emitter prints (STEP3's and
Inventory's emitter)."""
import io
import json
import subprocess

import pytest
from dash_support import ROOT, SAMPLE_FIELDS, sample_lines, step, wait_for

from dashboard.progress import ProgressState
from dashboard.registry import load_registry
from stepkit.progress_lines import PATTERN_SETS, ProgressEmitter

WORKFLOW = ROOT / "config" / "workflow.json"


def registry_of(tmp_path, *steps):
    path = tmp_path / "wf.json"
    path.write_text(json.dumps({"venvs": {"env": {}}, "steps": list(steps)}))
    return load_registry(path, ROOT)


def test_both_real_steps_name_the_standard_set_and_get_its_regexes():
    raw = {s["id"]: s["progress_patterns"] for s in json.loads(WORKFLOW.read_text())["steps"]}
    assert raw == {"inventory": "video-batch", "step3": "video-batch", "split": "video-batch"}
    reg = load_registry(WORKFLOW, ROOT)
    for step_id in raw:
        got = reg.get(step_id)
        assert got.problems == () and got.matcher is not None
        assert dict(got.patterns) == PATTERN_SETS["video-batch"]


def test_a_step_may_still_give_its_own_regexes(tmp_path):
    own = {"total": "^N=(?P<total>\\d+)$", "item": "^DOING (?P<item>.+)$", "success": "^OK$"}
    reg = registry_of(tmp_path, step("own", "progress.py", progress_patterns=own))
    got = reg.get("own")
    assert got.problems == () and dict(got.patterns) == own
    assert got.matcher.match("N=4") == ("total", {"total": "4"})
    assert got.matcher.match("DOING x.mp4") == ("item", {"item": "x.mp4"})
    assert got.matcher.match("TOTAL_VIDEOS_TO_PROCESS: 4") is None  # its own, not the standard set


@pytest.mark.parametrize("value, problem", [
    ("x", "progress_patterns: unknown standard set 'x' (known: video-batch)"),
    ("Video-Batch", "progress_patterns: unknown standard set 'Video-Batch' (known: video-batch)"),
    (3, "progress_patterns: must name a standard set (video-batch) or be an object of key -> regex, not int"),
    (["^TOTAL"], "progress_patterns: must name a standard set (video-batch) or be an object of key -> regex, "
                 "not list"),
    ({"total": "^T (?P<count>\\d+)$"}, "progress_patterns.total: needs the named group(s) total"),
])
def test_a_wrong_value_is_one_line_on_its_step_alone(tmp_path, value, problem):
    reg = registry_of(tmp_path, step("good", "progress.py", progress_patterns="video-batch"),
                      step("bad", "progress.py", progress_patterns=value))
    assert reg.get("bad").problems == (f"bad: {problem}",)
    assert reg.get("bad").matcher is None and reg.get("bad").patterns == ()
    assert reg.get("good").problems == () and reg.readiness(reg.get("good"))[0] == []


def test_the_unknown_set_is_on_the_card_and_stops_the_run(make_app):
    app = make_app([step("ok", "progress.py", progress_patterns="video-batch"),
                    step("typo", "progress.py", progress_patterns="video_batch")])
    client = app.test_client()
    problem = "typo: progress_patterns: unknown standard set 'video_batch' (known: video-batch)"
    steps = {s["id"]: s for s in client.get("/api/steps").get_json()["steps"]}
    assert steps["typo"]["problems"] == [problem] and not steps["typo"]["ready"]
    assert steps["ok"]["ready"]
    response = client.post("/api/steps/typo/run")
    assert response.status_code == 422 and problem in response.get_json()["error"]
    page = client.get("/").get_data(as_text=True)
    assert "unknown standard set &#39;video_batch&#39; (known: video-batch)" in page


# -- the contract, dashboard side -------------------------------------------------------
@pytest.mark.parametrize("step_id", ["inventory", "step3"])
def test_the_documented_sample_through_each_step_s_patterns(step_id):
    matcher = load_registry(WORKFLOW, ROOT).get(step_id).matcher
    lines = sample_lines()
    for line, (key, fields) in SAMPLE_FIELDS.items():
        assert line in lines, f"the sample block no longer holds {line!r}"
        found = matcher.match(line)
        assert found is not None and found[0] == key, line
        assert {name: found[1][name] for name in fields} == fields, line
    unmatched = [line for line in lines if matcher.match(line) is None]
    assert [line.split(":")[0] for line in unmatched] == ["CONFIG_EFFECTIVE", "DEVICE", "WARNING"]


def test_the_emitter_s_lines_drive_the_progress_state():
    """The emitter STEP3 and Inventory print with, read with the patterns the
    registry gives the real steps: counters, names and the bar come out right,
    awkward names included."""
    out = io.StringIO()
    emit = ProgressEmitter(stream=out)
    emit.total(3)
    emit.processing(1, 3, "a dir/clip: one -> two.MP4")
    emit.frames(1, 3, 40, 80)
    emit.success(1, 3, "a dir/clip: one -> two.MP4", "a dir/clip: one -> two.csv", 7)
    emit.processing(2, 3, "b.mkv")
    emit.frames(2, 3, 10, 100)
    emit.failed(2, 3, "b.mkv", "no video stream")
    emit.processing(3, 3, "c.mov")
    emit.skipped(3, 3, "c.mov", "results complete (use --force to redo)")
    emit.warning("c.mov: something")
    emit.summary(1, 3, 1, 1)
    for step_id in ("inventory", "step3"):
        matcher = load_registry(WORKFLOW, ROOT).get(step_id).matcher
        state = ProgressState()
        keys = []
        for line in out.getvalue().splitlines():
            found = matcher.match(line)
            if found:
                keys.append(found[0])
                state.apply(*found)
        assert keys == ["total", "item", "progress", "success", "item", "progress", "failure", "item", "skipped",
                        "summary"]
        assert (state.total, state.succeeded, state.failed, state.skipped) == (3, 1, 1, 1)
        assert state.last_success.item == "a dir/clip: one -> two.MP4"
        assert state.last_success.detail == "a dir/clip: one -> two.csv (7 scenes)"
        assert (state.failures[0].item, state.failures[0].detail) == ("b.mkv", "no video stream")
        assert state.fraction == 1.0


def test_inventory_run_by_the_dashboard_counts_through_the_named_set(make_app, paths):
    """The real Inventory step, as workflow.json declares it (the set's name),
    launched by the app on a real folder: the run's counters come from its lines."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=duration=1:size=64x36:rate=10",
                    "-pix_fmt", "yuv420p", str(paths["projects"] / "good.mp4")], check=True, timeout=60)
    (paths["projects"] / "junk.mp4").write_bytes(b"junk")
    real = next(s for s in json.loads(WORKFLOW.read_text())["steps"] if s["id"] == "inventory")
    client = make_app([real]).test_client()
    run_id = client.post("/api/steps/inventory/run").get_json()["run_id"]

    def ended():
        data = client.get(f"/api/runs/{run_id}").get_json()
        return data if data["status"] != "running" else None

    data = wait_for(ended, timeout=60, message="the inventory run to end")
    assert data["return_code"] == 1 and data["reason"] == "exit code 1 (at least one video is unreadable)"
    assert (data["total"], data["succeeded"], data["failed"]) == (2, 1, 1)
