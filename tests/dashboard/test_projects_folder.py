"""A missing or unreadable projects folder: said at start-up, on the page and by
the API, before any run fails on it; a folder created meanwhile counts at once."""
import json
import os
import re
import shlex
import signal
import subprocess
import sys

from dash_support import ROOT, step, wait_for, write_workflow

MISSING = "does not exist"


def steps():
    return [step("uses", "lister.py", "--input-dir", "{projects_dir}", name="Uses the folder"),
            step("other", "progress.py", "--items", "1", name="Needs no folder", run_all=False)]


def run_button(html: str, step_id: str) -> str:
    card = html.split(f'id="step-{step_id}"', 1)[1].split("</article>", 1)[0]
    return re.search(r'<button[^>]*data-action="run"[^>]*>', card).group(0)


def test_start_up_says_it_in_one_line_in_the_terminal_and_app_log(paths):
    write_workflow(paths["workflow"], steps())
    missing = paths["projects"].parent / "no such folder"
    env = {k: v for k, v in os.environ.items() if k != "DASHBOARD_TOKEN"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", "0", "--config", str(paths["workflow"]),
                             "--logs-dir", str(paths["logs"]), "--database", str(paths["db"]),
                             "--projects-dir", str(missing)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert "Dashboard on http://" in proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    said = [line for line in err.splitlines() if str(missing) in line]
    assert said == [f"ERROR: the projects folder {missing} does not exist: Run and Run all stay disabled until "
                    f"it can be used (create it: mkdir -p {shlex.quote(str(missing))})"]
    app_log = (paths["logs"] / "app.log").read_text()
    assert len([line for line in app_log.splitlines() if str(missing) in line and MISSING in line]) == 1


def test_nothing_is_said_when_the_folder_is_there(make_app, paths):
    make_app(steps())
    text = (paths["logs"] / "app.log").read_text()
    assert MISSING not in text and " ERROR " not in text


def test_the_page_and_the_api_refuse_until_the_folder_exists(make_app, paths):
    paths["projects"].rmdir()
    client = make_app(steps()).test_client()
    html = client.get("/").get_data(as_text=True)
    assert "disabled" in run_button(html, "uses")
    assert "disabled" not in run_button(html, "other"), "a step not given the folder can still run"
    assert re.search(r'<button[^>]*id="run-all"[^>]*disabled', html)
    assert f"Uses the folder cannot start: the projects folder {paths['projects']} does not exist" in html
    assert 'id="projects-problem" class="notice error">' in html  # shown, not hidden
    state = client.get("/api/steps/uses").get_json()
    assert state["ready"] is False and state["problems"] == [f"the projects folder {paths['projects']} {MISSING}"]
    assert state["fix"] == f"mkdir -p {paths['projects']}"

    refused = client.post("/api/steps/uses/run")
    body = refused.get_json()
    assert refused.status_code == 422 and MISSING in body["error"] and body["fix"] == state["fix"]
    all_refused = client.post("/api/run-all")
    assert all_refused.status_code == 422 and MISSING in all_refused.get_json()["error"]
    assert client.get("/api/runs").get_json()["total"] == 0, "no run was started to find it out"

    paths["projects"].mkdir()  # while the server runs
    state = client.get("/api/steps/uses").get_json()
    assert state["ready"] is True and state["problems"] == []
    html = client.get("/").get_data(as_text=True)
    assert "disabled" not in run_button(html, "uses")
    assert 'id="projects-problem" class="notice error" hidden>' in html
    response = client.post("/api/steps/uses/run")
    assert response.status_code == 202


def test_a_file_instead_of_a_folder(make_app, paths):
    paths["projects"].rmdir()
    paths["projects"].write_text("not a folder")
    client = make_app(steps()).test_client()
    response = client.post("/api/steps/uses/run")
    assert response.status_code == 422 and "is not a folder" in response.get_json()["error"]
    assert response.get_json()["fix"] is None


# Root reads any folder whatever its mode; without these two capabilities it
# meets the permissions like anyone else (util-linux's setpriv).
DROP_FILE_OVERRIDES = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                       "--bounding-set=-dac_override,-dac_read_search", "--"]

ASK_THE_APP = """
import json, sys
from dashboard import create_app
settings = json.loads(sys.argv[1])
app = create_app(settings)
response = app.test_client().post("/api/steps/uses/run")
print(json.dumps({"status": response.status_code, "body": response.get_json()}))
app.extensions["dashboard"].close()
"""


def test_an_unreadable_folder(paths):
    """The real app in a child process that obeys file permissions (as root too)."""
    write_workflow(paths["workflow"], steps())
    settings = {"ROOT": str(ROOT), "WORKFLOW_CONFIG": str(paths["workflow"]), "PROJECTS_DIR": str(paths["projects"]),
                "LOGS_DIR": str(paths["logs"]), "DATABASE": str(paths["db"]), "TOKEN": None, "NVIDIA_SMI": ""}
    prefix = DROP_FILE_OVERRIDES if os.geteuid() == 0 else []
    paths["projects"].chmod(0)
    try:
        out = subprocess.run([*prefix, sys.executable, "-c", ASK_THE_APP, json.dumps(settings)], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    finally:
        paths["projects"].chmod(0o755)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer["status"] == 422
    assert answer["body"]["error"].endswith(f"the projects folder {paths['projects']} cannot be read "
                                            f"(Permission denied)"), answer


def test_the_event_stream_announces_a_folder_created_meanwhile(make_app, paths):
    paths["projects"].rmdir()
    app = make_app(steps(), SSE_SYSTEM_S=0.2)
    response = app.test_client().get("/api/events", buffered=False)
    try:
        first = read_snapshot(response, lambda s: True)
        assert first["projects_problem"].endswith(MISSING) and first["sequence"]["problem"]
        paths["projects"].mkdir()
        later = read_snapshot(response, lambda s: s["projects_problem"] is None)
        assert later["steps"][0]["ready"] is True and later["sequence"]["problem"] is None
    finally:
        response.close()


def read_snapshot(response, until):
    buffer = ""
    for chunk in response.response:
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            if block.startswith("event: snapshot\n"):
                data = json.loads(block.split("data: ", 1)[1])
                if until(data):
                    return data
    raise AssertionError("the stream ended")


def test_a_folder_removed_while_the_server_runs_disables_run_again(make_app, paths):
    client = make_app(steps()).test_client()
    assert client.get("/api/steps/uses").get_json()["ready"] is True
    paths["projects"].rmdir()
    wait_for(lambda: client.get("/api/steps/uses").get_json()["ready"] is False, timeout=2)
    assert client.post("/api/steps/uses/run").status_code == 422
