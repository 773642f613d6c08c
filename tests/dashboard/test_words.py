"""A finished run in words a user understands (real runs of the test steps and
of Inventory through the app); the raw reason and code stay in the details."""
import json
import re

import pytest
from dash_support import WORKFLOW, step, wait_for
from test_inventory import make_video

from dashboard.preview import shorten


def ended(app, step_id):
    run = app.extensions["dashboard"].runner.launch(step_id)
    assert run.done.wait(20)
    return app.test_client().get(f"/api/runs/{run.id}").get_json()


def card_result(html: str, step_id: str) -> tuple[str, str]:
    """The card's sentence and the raw details under it."""
    card = html.split(f'id="step-{step_id}"', 1)[1].split("</article>", 1)[0]
    outcome = re.search(r'<span data-field="outcome">([^<]*)</span>', card).group(1)
    raw = re.search(r'<span class="raw muted" data-field="reason">([^<]*)</span>', card).group(1)
    return outcome, raw


@pytest.mark.parametrize("entry, outcome, raw", [
    (step("s", "progress.py", "--items", "3"), "Done: 3 videos analysed, 60 scenes", "exit code 0"),
    (step("s", "progress.py", "--items", "1", done_verb="checked"), "Done: 1 video checked, 10 scenes",
     "exit code 0"),
    (step("s", "progress.py", "--items", "0"), "Done: there was no video to work on in the projects folder",
     "exit code 0"),
    (step("s", "progress.py", "--items", "3", "--fail", "2", exit_codes={"1": "at least one video failed"}),
     "Finished with failures: 1 of 3 videos failed; 2 videos analysed, 40 scenes",
     "exit code 1 (at least one video failed)"),
    (step("s", "exit_code.py", "2", "CONFIG_EFFECTIVE: {{}}", "ERROR: input folder not found: /nowhere",
          exit_codes={"2": "usage error"}),
     "Could not start: input folder not found: /nowhere", "exit code 2 (usage error)"),
    (step("s", "exit_code.py", "2", exit_codes={"2": "usage error"}),
     "Could not start: usage error; see its log", "exit code 2 (usage error)"),
    (step("s", "exit_code.py", "143"),
     "Stopped: the step was ended by a signal (SIGTERM) from outside the dashboard; run it again to finish",
     "exit code 143"),
    (step("s", "self_kill.py"),
     "Stopped: the step was ended by a signal (SIGKILL), often because the system ran out of memory; "
     "run it again to finish", "killed by signal 9 (SIGKILL) · return code -9"),
], ids=["done", "done-verb", "nothing", "failures", "error-line", "usage", "exit-143", "sigkill"])
def test_the_result_is_a_sentence_and_the_code_a_detail(make_app, entry, outcome, raw):
    app = make_app([entry])
    run = ended(app, "s")
    assert run["outcome"] == outcome
    html = app.test_client().get("/").get_data(as_text=True)
    assert card_result(html, "s") == (outcome, raw)
    history = app.test_client().get("/history").get_data(as_text=True)
    assert f'<td class="result">{outcome}<span class="raw muted">{raw}</span></td>' in history
    assert "Return code" not in history
    app.extensions["dashboard"].close()
    again = make_app(None).test_client()  # from the history alone: the same words
    assert again.get(f"/api/runs/{run['id']}").get_json()["outcome"] == outcome


def test_a_cancel_in_words(make_app):
    app = make_app([step("s", "sleeper.py", "2")])
    client = app.test_client()
    run_id = client.post("/api/steps/s/run").get_json()["run_id"]
    wait_for(lambda: client.get(f"/api/runs/{run_id}").get_json()["total"] == 2, message="the first lines")
    client.post("/api/steps/s/cancel")
    run = wait_for(lambda: (lambda r: r if r["status"] != "running" else None)(
        client.get(f"/api/runs/{run_id}").get_json()), message="the cancel")
    assert run["outcome"] == "Cancelled: you stopped it before any video was done"
    assert run["reason"] == "cancelled by the user"


def test_inventory_in_words(make_app, paths):
    make_video(paths["projects"] / "a.mp4")
    make_video(paths["projects"] / "b" / "c.mov")
    workflow = json.loads(WORKFLOW.read_text())
    workflow["steps"] = [s for s in workflow["steps"] if s["id"] == "inventory"]
    paths["workflow"].write_text(json.dumps(workflow))
    app = make_app(None)
    assert workflow["steps"][0]["done_verb"] == "checked"  # as config/workflow.json says for Inventory
    assert ended(app, "inventory")["outcome"] == "Done: 2 videos checked"
    del workflow["steps"][0]["done_verb"]  # a step that does not say: the generic word
    paths["workflow"].write_text(json.dumps(workflow))
    app.extensions["dashboard"].close()
    assert ended(make_app(None), "inventory")["outcome"] == "Done: 2 videos processed"


def test_the_card_s_lines_are_the_meaningful_ones_each_whole(make_app):
    app = make_app([step("s", "progress.py", "--items", "2", "--frames", "30", "--preamble")])
    live = ended(app, "s")
    card = app.test_client().get("/api/steps/s").get_json()["run"]
    lines = card["last_lines"]
    assert not [line for line in lines if line.startswith("FRAMES:")], "frame counts are the bar's, not the box's"
    assert lines[1:] == ["DEVICE: cpu (test)", "TOTAL_VIDEOS_TO_PROCESS: 2", "PROCESSING_VIDEO: 1/2: demo/video 1.mp4",
                         "SUCCESS: 1/2: demo/video 1.mp4 -> demo/video 1.csv (10 scenes)",
                         "PROCESSING_VIDEO: 2/2: demo/video 2.mp4",
                         "SUCCESS: 2/2: demo/video 2.mp4 -> demo/video 2.csv (20 scenes)",
                         "SUMMARY: 2/2 succeeded, 0 failed, 0 skipped"]
    config = lines[0]
    # Cut after a whole "key": value pair, never inside one, and still JSON-like to the eye.
    assert config.startswith('CONFIG_EFFECTIVE: {"input_dir": "/somewhere/projects", ') and config.endswith(', …}')
    assert len(config) <= 160
    kept = json.loads(config[len("CONFIG_EFFECTIVE: "):-len(", …}")] + "}")
    assert list(kept)[:3] == ["input_dir", "extensions", "threshold"]
    assert live["last_lines"] == lines
    app.extensions["dashboard"].close()
    again = make_app(None).test_client()  # after a restart, the lines come from the log: the same
    assert again.get("/api/steps/s").get_json()["run"]["last_lines"] == lines


def test_a_long_line_that_is_not_json_is_cut_at_a_space():
    line = "WARNING: " + " ".join(f"word{i}" for i in range(60))
    short = shorten(line)
    assert short.endswith(" …") and len(short) <= 160
    assert line.startswith(short[:-2]) and short[:-2].split()[-1] in line.split()


@pytest.mark.parametrize("entries, status, outcome, raw", [
    ([step("one", "progress.py", "--items", "1"), step("bad", "exit_code.py", "3", name="Bad step",
                                                       exit_codes={"3": "test failure"}),
      step("never", "progress.py")], "failed",
     "Stopped at Bad step: could not start: test failure; see its log — the steps after it did not run", "stopped: Bad step failed (exit code 3 (test failure))"),
    ([step("one", "progress.py", "--items", "1"), step("two", "progress.py", "--items", "1")], "succeeded",
     "Done: all 2 steps succeeded", "all 2 steps succeeded"),
])
def test_run_all_ends_in_words_and_the_raw_reason_is_a_detail(make_app, entries, status, outcome, raw):
    app = make_app(entries)
    client = app.test_client()
    client.post("/api/run-all", headers={"Origin": "http://localhost"})
    done = wait_for(lambda: (lambda s: s if s["status"] != "running" else None)(
        client.get("/api/run-all").get_json()["current"]), timeout=30, message="run all to end")
    assert (done["status"], done["outcome"], done["reason"]) == (status, outcome, raw)
    html = client.get("/").get_data(as_text=True)
    assert f"Run all #{done['id']}: {outcome}" in html
    assert re.search(r'<div id="sequence-raw" class="raw muted">([^<]*)</div>', html).group(1) == raw
    assert "exit code" not in outcome
