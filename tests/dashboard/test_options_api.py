"""Run options through the API: refused values start nothing; chosen ones reach the
step's command line, the history, the History page and "Run again"."""
import json
import shutil

import psutil
import pytest
from dash_support import ROOT, WORKFLOW, step, wait_for

THRESHOLD = {"name": "threshold", "label": "Threshold", "type": "number", "default": 0.5, "min": 0, "max": 1,
             "exclusive": True, "flag": "--threshold"}
FORCE = {"name": "force", "label": "Force re-run", "type": "boolean", "default": False, "flag": "--force"}
VIDEOS = {"name": "videos", "label": "Videos", "type": "videos", "default": None, "flag": "--videos"}
WORKERS = {"name": "num_workers", "label": "Decoder workers", "type": "integer", "default": 1, "min": 1,
           "max": 64, "auto": True, "flag": "--num-workers"}
SAME_SITE = {"Origin": "http://localhost"}


def echo_steps():
    # env_dump.py prints its argv as JSON: what the options became on its command line.
    return [step("echo", "env_dump.py", "--first", options=[THRESHOLD, FORCE, VIDEOS, WORKERS]),
            step("plain", "progress.py", "--items", "1")]


@pytest.fixture
def echo_app(make_app, paths):
    (paths["projects"] / "a, b.mp4").write_bytes(b"x")  # a comma in a name: the JSON list keeps it whole
    (paths["projects"] / "sub").mkdir()
    (paths["projects"] / "sub" / "c.mov").write_bytes(b"x")
    return make_app(echo_steps())


def wait_run(client, run_id, timeout=20):
    def ended():
        data = client.get(f"/api/runs/{run_id}").get_json()
        return data if data["status"] != "running" else None
    return wait_for(ended, timeout=timeout, message=f"run {run_id} to end")


def printed_argv(client, run_id):
    log = client.get(f"/api/runs/{run_id}/log").get_json()
    line = next(entry["text"] for entry in log["lines"] if entry["text"].startswith('{"argv"'))
    return json.loads(line)["argv"]


def children():
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "env_dump.py" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            pass  # ended meanwhile
    return found


@pytest.mark.parametrize("body, status, words", [
    ({"options": {"treshold": 0.3}}, 422, "unknown option 'treshold'"),
    ({"options": {"threshold": 1.5}}, 422, "option threshold: must be between 0 and 1 (exclusive), got 1.5"),
    ({"options": {"threshold": "0.3"}}, 422, "option threshold: must be a number"),
    ({"options": {"force": 1}}, 422, "option force: must be true or false"),
    ({"options": {"num_workers": 0}}, 422, "option num_workers: must be between 1 and 64"),
    ({"options": {"videos": ["nowhere.mp4"]}}, 422, "option videos: 'nowhere.mp4' is not a video of the projects folder"),
    ({"options": {"videos": ["../outside.mp4"]}}, 422, "option videos: '../outside.mp4' is not a video"),
    ({"options": {"videos": [str(ROOT / "projects" / "demo" / "sample.mp4")]}}, 422, "option videos:"),
    ({"options": [0.3]}, 422, "options must be an object"),
    ({"option": {}}, 422, "unknown key 'option' in the request body"),
    ([1, 2], 422, "the request body must be a JSON object"),
    ({"options": {"num_workers": 10**400}}, 422, "option num_workers: must be between 1 and 64"),
    ({"options": {"threshold": 10**400}}, 422, "option threshold: must be between 0 and 1"),
    ({"options": {"videos": [" a, b.mp4"]}}, 422, "option videos: ' a, b.mp4' is not a video"),
    ({"options": {"videos": [f"sub/{'x' * 70}{i}.mov" for i in range(2000)]}}, 422, "too many for one command line"),
])
def test_a_refused_option_is_a_422_naming_it_and_nothing_runs(echo_app, paths, body, status, words):
    (paths["projects"].parent / "outside.mp4").write_bytes(b"x")
    client = echo_app.test_client()
    response = client.post("/api/steps/echo/run", json=body, headers=SAME_SITE)
    assert response.status_code == status
    message = response.get_json()["error"]
    assert words in message and "\n" not in message, message
    svc = echo_app.extensions["dashboard"]
    assert svc.store.find()[1] == 0 and svc.runner.active_runs() == [] and children() == []


def test_a_body_that_is_not_json_is_a_400(echo_app):
    client = echo_app.test_client()
    response = client.post("/api/steps/echo/run", data="threshold=0.3",
                           headers={**SAME_SITE, "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400 and "not JSON" in response.get_json()["error"]
    assert echo_app.extensions["dashboard"].store.find()[1] == 0


def test_chosen_options_reach_the_command_line_the_history_and_run_again(echo_app, paths):
    client = echo_app.test_client()
    chosen = {"threshold": 0.3, "force": True, "videos": ["a, b.mp4", "sub/c.mov"]}
    response = client.post("/api/steps/echo/run", json={"options": chosen}, headers=SAME_SITE)
    assert response.status_code == 202
    run_id = response.get_json()["run_id"]
    done = wait_run(client, run_id)
    assert done["status"] == "succeeded"
    # Only the values that differ from the defaults, after the configured arguments.
    expected_argv = ["--first", "--threshold=0.3", "--force", '--videos=["a, b.mp4", "sub/c.mov"]']
    assert printed_argv(client, run_id) == expected_argv
    recorded = {**chosen, "num_workers": 1}
    assert done["options"] == recorded
    assert done["options_summary"] == "Threshold 0.3 · Force re-run · Videos: a, b.mp4, sub/c.mov"
    assert client.get("/api/runs").get_json()["runs"][0]["options"] == recorded
    html = client.get("/history").get_data(as_text=True)
    assert "Threshold 0.3 · Force re-run · Videos: a, b.mp4, sub/c.mov" in html
    assert f'data-again="{run_id}"' in html

    again = client.post(f"/api/runs/{run_id}/again", headers=SAME_SITE)
    assert again.status_code == 202
    second = wait_run(client, again.get_json()["run_id"])
    assert second["options"] == recorded and printed_argv(client, second["id"]) == expected_argv

    # A chosen video that has gone: Run again is refused, naming it, and nothing runs.
    (paths["projects"] / "sub" / "c.mov").unlink()
    refused = client.post(f"/api/runs/{run_id}/again", headers=SAME_SITE)
    assert refused.status_code == 422 and "'sub/c.mov' is not a video" in refused.get_json()["error"]
    assert echo_app.extensions["dashboard"].store.find()[1] == 2
    assert client.post("/api/runs/999/again", headers=SAME_SITE).status_code == 404


def test_no_body_and_run_all_take_the_defaults(echo_app):
    client = echo_app.test_client()
    run_id = client.post("/api/steps/echo/run", headers=SAME_SITE).get_json()["run_id"]
    done = wait_run(client, run_id)
    assert printed_argv(client, run_id) == ["--first"]
    assert done["options"] == {"threshold": 0.5, "force": False, "videos": None, "num_workers": 1}
    assert done["options_summary"] == ""
    assert client.post("/api/run-all", headers=SAME_SITE).status_code == 202
    seq = wait_for(lambda: (lambda s: s if s["status"] != "running" else None)(
        client.get("/api/run-all").get_json()["current"]), timeout=30, message="run all to end")
    assert seq["status"] == "succeeded"
    assert printed_argv(client, seq["runs"]["echo"]) == ["--first"]
    declared = client.get("/api/steps/echo/options").get_json()["options"]
    assert [o["name"] for o in declared] == ["threshold", "force", "videos", "num_workers"]
    assert client.get("/api/steps/plain/options").get_json()["options"] == []


def test_a_value_the_step_refuses_fails_the_run_with_its_own_words(make_app, paths):
    """The step's validation is the last word: here the declaration allows more
    decoder workers than STEP3 takes, and STEP3's one-line ERROR is the result."""
    data = json.loads(WORKFLOW.read_text())
    step3 = next(s for s in data["steps"] if s["id"] == "step3")
    for option in step3["options"]:
        if option["name"] == "num_workers":
            option["max"] = 100
    paths["workflow"].write_text(json.dumps({**data, "steps": [step3]}))
    shutil.copy(ROOT / "projects" / "demo" / "sample.mp4", paths["projects"] / "sample.mp4")
    client = make_app(None).test_client()
    response = client.post("/api/steps/step3/run", json={"options": {"num_workers": 99}}, headers=SAME_SITE)
    assert response.status_code == 202
    done = wait_run(client, response.get_json()["run_id"], timeout=120)
    assert done["status"] == "failed" and done["return_code"] == 2
    assert done["outcome"] == ("Could not start: config: 'num_workers' must be between 1 and 64, got 99 "
                               "(in command line)")


def test_the_card_offers_the_options_collapsed_with_the_folder_s_videos(echo_app):
    client = echo_app.test_client()
    html = client.get("/").get_data(as_text=True)
    echo = html.split('id="step-echo"', 1)[1].split("</article>", 1)[0]
    plain = html.split('id="step-plain"', 1)[1].split("</article>", 1)[0]
    assert '<details class="options" data-field="options-box">' in echo  # collapsed: no "open"
    for name in ("threshold", "force", "videos", "num_workers"):
        assert f'data-option="{name}"' in echo
    assert '<input type="checkbox" value="a, b.mp4">' in echo and '<input type="checkbox" value="sub/c.mov">' in echo
    assert 'placeholder="auto or 1–64"' in echo
    assert "details" not in plain and 'data-field="run-options"' not in plain
    declared = json.loads(html.split('<script id="step-options" type="application/json">', 1)[1].split("</script>")[0])
    assert [o["name"] for o in declared["echo"]] == ["threshold", "force", "videos", "num_workers"]
    assert declared["plain"] == []


def test_a_deeply_nested_or_huge_body_is_a_clear_4xx(echo_app):
    client = echo_app.test_client()
    nested = client.post("/api/steps/echo/run", data="[" * 100_000, content_type="application/json",
                         headers=SAME_SITE)
    assert nested.status_code == 400 and "not JSON" in nested.get_json()["error"]
    huge = client.post("/api/steps/echo/run", data=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                       content_type="application/json", headers=SAME_SITE)
    assert huge.status_code == 413
    assert echo_app.extensions["dashboard"].store.find()[1] == 0
