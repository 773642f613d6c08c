"""The pages in a real headless Chromium, against a real server and real runs.

Screenshots go to artifacts/dashboard/ (git-ignored).
"""
import json
import re
import shutil

import psutil
import pytest
from dash_support import ROOT, WORKFLOW, step, wait_for
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.browser

XSS_SCRIPT = "<script>alert(1)</script>.mp4"
XSS_IMG = "<img src=x onerror=alert(2)>.mp4"


def card(driver, step_id):
    return driver.find_element(By.ID, f"step-{step_id}")


def field(driver, step_id, name):
    return card(driver, step_id).find_element(By.CSS_SELECTOR, f'[data-field="{name}"]').text


def wait_until(driver, predicate, timeout=20, message="condition"):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: predicate(d), message=message)


def assert_no_alert(driver):
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text


def js_errors(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def seconds(text: str) -> int:
    parts = [int(p) for p in text.split(":")]
    total = 0
    for p in parts:
        total = total * 60 + p
    return total


def process_tree_pids(pid):
    try:
        proc = psutil.Process(pid)
        return [pid] + [c.pid for c in proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def set_option(driver, step_id, name, text):
    box = card(driver, step_id).find_element(By.CSS_SELECTOR, f'.option[data-option="{name}"] input')
    box.clear()
    box.send_keys(text)


@pytest.mark.slow
def test_real_step3_on_the_sample_video(live_server, browser, artifacts, paths):
    """Open STEP3's options, lower the threshold, press Run, watch the bar reach 100 %,
    read the success in the log viewer and the threshold in the result; run it again from History."""
    demo = paths["projects"] / "demo"
    demo.mkdir()
    shutil.copy(ROOT / "projects" / "demo" / "sample.mp4", demo / "sample.mp4")
    shutil.copy(WORKFLOW, paths["workflow"])  # the real steps, on this test's own folders
    server = live_server(None)
    driver = browser
    driver.get(server.url + "/")
    assert "STEP3" in card(driver, "step3").text
    assert field(driver, "step3", "status") == "idle"
    # The options are collapsed, and say they are the defaults until one is changed.
    options = card(driver, "step3").find_element(By.CSS_SELECTOR, "details.options")
    assert options.get_attribute("open") is None and field(driver, "step3", "options-changed") == "(defaults)"
    options.find_element(By.TAG_NAME, "summary").click()
    videos = [c.get_attribute("value") for c in options.find_elements(By.CSS_SELECTOR, ".video-choice input")]
    assert videos == ["demo/sample.mp4"]
    set_option(driver, "step3", "threshold", "0.3")
    assert field(driver, "step3", "options-changed") == "— changed: Threshold 0.3"
    driver.save_screenshot(str(artifacts / "step3_options.png"))
    card(driver, "step3").find_element(By.CSS_SELECTOR, '[data-action="run"]').click()
    wait_until(driver, lambda d: field(d, "step3", "status") == "running", message="STEP3 to start")

    # The bar moves while the video is analysed.
    wait_until(driver, lambda d: field(d, "step3", "percent") not in ("—", "0.0 %"), timeout=180,
               message="the first progress")
    item = field(driver, "step3", "item")
    assert item.startswith("demo/sample.mp4 (1/1)")
    driver.save_screenshot(str(artifacts / "step3_during_run.png"))

    # A reload shows the same run, and the timer goes on from where it was.
    before = seconds(field(driver, "step3", "elapsed"))
    driver.refresh()
    wait_until(driver, lambda d: d.execute_script("return document.readyState") == "complete")
    state = field(driver, "step3", "status")
    assert state in ("running", "succeeded")  # the same run, live or just ended, never "idle"
    if state == "running":
        assert seconds(field(driver, "step3", "elapsed")) >= before

    wait_until(driver, lambda d: field(d, "step3", "status") == "succeeded", timeout=600, message="STEP3 to succeed")
    assert field(driver, "step3", "percent") == "100.0 %"
    assert driver.find_element(By.CSS_SELECTOR, "#step-step3 progress").get_attribute("value") == "100"
    assert field(driver, "step3", "counts").startswith("1 succeeded · 0 failed · 0 skipped")
    assert field(driver, "step3", "reason") == "exit code 0"
    lines = field(driver, "step3", "lines")
    success = re.search(r"SUCCESS: 1/1: demo/sample\.mp4 -> demo/sample\.csv \((\d+) scenes\)", lines)
    assert success, lines
    assert field(driver, "step3", "outcome") == f"Done: 1 video analysed, {success.group(1)} scenes"
    assert "FRAMES:" not in lines
    assert field(driver, "step3", "run-options") == "Threshold 0.3"
    driver.save_screenshot(str(artifacts / "step3_after_run.png"))
    assert (demo / "sample.csv").is_file()
    assert json.loads((demo / "sample.scenes.json").read_text())["threshold"] == 0.3

    # The log viewer shows the success line.
    card(driver, "step3").find_element(By.CSS_SELECTOR, '[data-field="run-link"]').click()
    wait_until(driver, lambda d: d.find_elements(By.ID, "log"))
    assert success.group(0) in driver.find_element(By.ID, "log").text
    driver.save_screenshot(str(artifacts / "step3_log_viewer.png"))
    driver.get(server.url + "/history")
    row = driver.find_element(By.CSS_SELECTOR, "#runs tbody tr")
    assert "succeeded" in row.text and "exit code 0" in row.text
    assert f"Done: 1 video analysed, {success.group(1)} scenes" in row.text
    assert row.find_element(By.CSS_SELECTOR, "td.options").text == "Threshold 0.3"
    driver.save_screenshot(str(artifacts / "history.png"))
    # Run again: the same threshold, so the result is complete and the video is skipped.
    row.find_element(By.CSS_SELECTOR, "button[data-again]").click()
    started = wait_until(driver, lambda d: re.search(r"Started run #(\d+)", row.text), message="Run again")
    svc = server.app.extensions["dashboard"]
    again = wait_for(lambda: (lambda r: r if r and r["status"] != "running" else None)(
        svc.run_state(int(started.group(1)))), timeout=180, message="the second run to end")
    assert again["options"] == svc.run_state(int(started.group(1)) - 1)["options"]
    assert again["options"]["threshold"] == 0.3
    assert again["outcome"] == "Done: nothing new to do, 1 video skipped (their results are complete)"
    assert js_errors(driver) == []


@pytest.mark.slow
def test_cancelling_real_step3_leaves_no_process(live_server, browser, artifacts, paths):
    demo = paths["projects"] / "demo"
    demo.mkdir()
    shutil.copy(ROOT / "projects" / "demo" / "sample.mp4", demo / "sample.mp4")
    shutil.copy(WORKFLOW, paths["workflow"])
    server = live_server(None)
    svc = server.app.extensions["dashboard"]
    driver = browser
    driver.get(server.url + "/")
    card(driver, "step3").find_element(By.CSS_SELECTOR, '[data-action="run"]').click()
    # Wait until it decodes frames: ffmpeg and the model are running.
    wait_until(driver, lambda d: " · " in field(d, "step3", "item"), timeout=180, message="frame progress")
    run = svc.runner.active("step3")
    tree = process_tree_pids(run.pid)
    assert len(tree) >= 2, "expected STEP3 and its decoder"
    card(driver, "step3").find_element(By.CSS_SELECTOR, '[data-action="cancel"]').click()
    wait_until(driver, lambda d: field(d, "step3", "status") == "cancelled", timeout=30, message="the cancel")
    assert field(driver, "step3", "reason").startswith("cancelled by the user")
    assert field(driver, "step3", "outcome").startswith("Cancelled: you stopped it")
    assert field(driver, "step3", "eta") == "—"
    wait_for(lambda: not any(alive(p) for p in tree), timeout=10, message="every STEP3 process to end")
    driver.save_screenshot(str(artifacts / "step3_cancelled.png"))
    assert js_errors(driver) == []


def test_cancel_on_a_long_run_leaves_no_process(live_server, browser, artifacts):
    server = live_server([step("tree", "grandchild.py", name="Process tree"),
                          step("long", "sleeper.py", "3", name="Long run")])
    driver = browser
    driver.get(server.url + "/")
    card(driver, "tree").find_element(By.CSS_SELECTOR, '[data-action="run"]').click()
    wait_until(driver, lambda d: "GRANDCHILD" in field(d, "tree", "lines"))
    grandchild = int(field(driver, "tree", "lines").split("GRANDCHILD ")[1].split()[0])
    child = server.app.extensions["dashboard"].runner.active("tree").pid
    assert alive(grandchild)
    card(driver, "long").find_element(By.CSS_SELECTOR, '[data-action="run"]').click()
    wait_until(driver, lambda d: field(d, "long", "percent") not in ("—",), message="the long run's progress")
    driver.save_screenshot(str(artifacts / "dashboard_two_runs.png"))
    card(driver, "tree").find_element(By.CSS_SELECTOR, '[data-action="cancel"]').click()
    wait_until(driver, lambda d: field(d, "tree", "status") == "cancelled")
    wait_for(lambda: not alive(child) and not alive(grandchild), timeout=5, message="the tree to end")
    assert field(driver, "long", "status") == "running"
    card(driver, "long").find_element(By.CSS_SELECTOR, '[data-action="cancel"]').click()
    wait_until(driver, lambda d: field(d, "long", "status") == "cancelled")
    assert js_errors(driver) == []


# Records what the page asks of the Notification API, installed before its scripts run.
NOTIFICATION_SPY = """
window.__asked = 0; window.__notes = [];
window.Notification = class {
  static get permission() { return window.__asked ? "granted" : "default"; }
  static requestPermission() { window.__asked += 1; return Promise.resolve("granted"); }
  constructor(title, options) { window.__notes.push([title, options.body]); }
};
"""


def test_a_long_run_asks_before_cancelling_and_its_end_is_announced(live_server, browser, artifacts):
    """The one-minute limits shortened to one second (the app's config), so that the test stays short."""
    server = live_server([step("long", "sleeper.py", "1", name="Long run"),
                          step("short", "progress.py", "--items", "2", "--frames", "10", "--delay", "0.1",
                               name="Short run")],
                         CANCEL_CONFIRM_AFTER_S=1, NOTIFY_AFTER_S=1)
    driver = browser
    spy = driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": NOTIFICATION_SPY})
    try:
        driver.get(server.url + "/")
        assert driver.execute_script("return window.__asked") == 0  # never asked on load
        driver.find_element(By.ID, "notify").click()  # asked from the click, and allowed
        wait_until(driver, lambda d: d.execute_script("return window.__asked") == 1, message="the permission request")
        assert driver.find_element(By.ID, "notify").is_selected()

        card(driver, "long").find_element(By.CSS_SELECTOR, '[data-action="run"]').click()
        wait_until(driver, lambda d: field(d, "long", "status") == "running", message="the long run to start")
        wait_until(driver, lambda d: seconds(field(d, "long", "elapsed")) >= 2, message="2 s of the long run")
        cancel = card(driver, "long").find_element(By.CSS_SELECTOR, '[data-action="cancel"]')
        cancel.click()
        alert = wait_until(driver, lambda d: d.switch_to.alert, message="the confirmation")
        assert "Long run has been running for 0:" in alert.text and "Cancel it?" in alert.text
        alert.dismiss()  # "no": it goes on
        assert field(driver, "long", "status") == "running"
        assert server.app.extensions["dashboard"].runner.active("long").cancel_requested() is None
        cancel.click()
        wait_until(driver, lambda d: d.switch_to.alert, message="the confirmation").accept()
        wait_until(driver, lambda d: field(d, "long", "status") == "cancelled")
        assert driver.title == "Dashboard · Video workflow"  # a cancel is the user's own doing: not announced

        card(driver, "short").find_element(By.CSS_SELECTOR, '[data-action="run"]').click()
        wait_until(driver, lambda d: field(d, "short", "status") == "succeeded", timeout=60)
        wait_until(driver, lambda d: d.title == "✓ Short run done — Dashboard · Video workflow",
                   message="the title to say the run is done")
        notes = driver.execute_script("return window.__notes")
        assert notes == [["Short run done", "Done: 2 videos analysed, 30 scenes"]]
        driver.save_screenshot(str(artifacts / "dashboard_run_ended_title.png"))
        driver.find_element(By.TAG_NAME, "h2").click()  # back on the page: the title is the page's again
        wait_until(driver, lambda d: d.title == "Dashboard · Video workflow", message="the title to come back")
        assert js_errors(driver) == []
    finally:
        driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": spy["identifier"]})
        driver.execute_script("localStorage.clear()")


def test_live_updates_and_the_timer_survives_a_reload(live_server, browser, artifacts):
    server = live_server([step("slow", "progress.py", "--items", "4", "--frames", "25", "--delay", "0.1", name="Slow step")])
    driver = browser
    driver.get(server.url + "/")
    card(driver, "slow").find_element(By.CSS_SELECTOR, '[data-action="run"]').click()
    wait_until(driver, lambda d: field(d, "slow", "status") == "running")
    seen = set()
    wait_until(driver, lambda d: seen.add(field(d, "slow", "percent")) or len(seen) >= 4, message="the bar to move")
    wait_until(driver, lambda d: seconds(field(d, "slow", "elapsed")) >= 3, message="3 s")
    # The ETA comes once the pace is known (seconds of steady progress), and is then about right:
    # this run takes 10 s (4 videos of 25 frames, 0.1 s each).
    eta = wait_until(driver, lambda d: field(d, "slow", "eta") != "—" and field(d, "slow", "eta"), timeout=6,
                     message="an ETA")
    assert "ETA" in card(driver, "slow").text
    assert abs(seconds(field(driver, "slow", "elapsed")) + seconds(eta) - 10) <= 3
    assert driver.title.endswith("Dashboard · Video workflow") and "%" in driver.title
    driver.save_screenshot(str(artifacts / "dashboard_during_run.png"))
    before = seconds(field(driver, "slow", "elapsed"))
    driver.refresh()
    assert field(driver, "slow", "status") == "running"
    assert seconds(field(driver, "slow", "elapsed")) >= before
    wait_until(driver, lambda d: field(d, "slow", "status") == "succeeded", timeout=60)
    assert field(driver, "slow", "percent") == "100.0 %"
    assert field(driver, "slow", "counts") == "4 succeeded · 0 failed · 0 skipped of 4"
    driver.save_screenshot(str(artifacts / "dashboard_after_run.png"))
    assert js_errors(driver) == []


def test_file_names_and_lines_show_as_text(live_server, browser, artifacts, paths):
    # "/" cannot be in a file name: the first payload is a folder and a file, as STEP3 would name it.
    (paths["projects"] / "<script>alert(1)<").mkdir()
    (paths["projects"] / "<script>alert(1)<" / "script>.mp4").write_bytes(b"")
    (paths["projects"] / XSS_IMG).write_bytes(b"")
    server = live_server([step("xss", "lister.py", "--input-dir", "{projects_dir}", name="<b>Lister</b>")])
    driver = browser
    driver.get(server.url + "/")
    videos = driver.find_element(By.ID, "projects").text
    assert XSS_SCRIPT in videos and XSS_IMG in videos
    assert "<b>Lister</b>" in card(driver, "xss").text
    card(driver, "xss").find_element(By.CSS_SELECTOR, '[data-action="run"]').click()
    wait_until(driver, lambda d: field(d, "xss", "status") == "succeeded")
    text = card(driver, "xss").text
    assert XSS_SCRIPT in text and XSS_IMG in text and "<b>not bold</b>" in text
    assert_no_alert(driver)
    assert driver.find_elements(By.TAG_NAME, "img") == []
    assert driver.find_elements(By.CSS_SELECTOR, "main b") == []
    assert len(driver.find_elements(By.TAG_NAME, "script")) == 5  # the state, the options, three scripts
    driver.save_screenshot(str(artifacts / "xss_dashboard.png"))

    driver.refresh()  # the server-rendered page, not only the script's updates
    assert XSS_IMG in card(driver, "xss").text
    assert_no_alert(driver)
    assert driver.find_elements(By.TAG_NAME, "img") == []

    card(driver, "xss").find_element(By.CSS_SELECTOR, '[data-field="run-link"]').click()
    wait_until(driver, lambda d: d.find_elements(By.ID, "log"))
    log = driver.find_element(By.ID, "log").text
    assert f"PROCESSING_VIDEO: 2/2: {XSS_SCRIPT}" in log and f"PROCESSING_VIDEO: 1/2: {XSS_IMG}" in log
    assert_no_alert(driver)
    assert driver.find_elements(By.TAG_NAME, "img") == []
    driver.save_screenshot(str(artifacts / "xss_log_viewer.png"))
    driver.get(server.url + "/history")
    assert "<b>Lister</b>" in driver.find_element(By.ID, "runs").text
    assert_no_alert(driver)
    assert js_errors(driver) == []


def test_log_viewer_follows_filters_and_downloads(live_server, browser, artifacts):
    server = live_server([step("long", "sleeper.py", name="Long run")])
    client_run = server.app.extensions["dashboard"].runner.launch("long")
    driver = browser
    driver.get(f"{server.url}/logs?run={client_run.id}")
    log = driver.find_element(By.ID, "log")
    wait_until(driver, lambda d: "FRAMES: 1/1: 3/100000" in log.text, message="followed lines")
    count = len(log.text.splitlines())
    wait_until(driver, lambda d: len(d.find_element(By.ID, "log").text.splitlines()) > count, message="more lines")
    driver.save_screenshot(str(artifacts / "log_viewer_follow.png"))
    href = driver.find_element(By.ID, "log-download").get_attribute("href")
    assert href.endswith(f"/logs/download?run={client_run.id}")
    filter_box = driver.find_element(By.ID, "log-filter")
    filter_box.send_keys("PROCESSING")
    filter_box.submit()
    wait_until(driver, lambda d: d.find_element(By.ID, "log").text.strip() == "PROCESSING_VIDEO: 1/1: long/video 1.mp4")
    server.app.extensions["dashboard"].runner.cancel("long")
    assert client_run.done.wait(10)
    # The app log, and a choice of step, from the selects.
    driver.get(f"{server.url}/logs")
    assert "dashboard ready" in driver.find_element(By.ID, "log").text
    assert js_errors(driver) == []


def test_problems_show_on_the_card_not_as_an_error_page(live_server, browser, artifacts):
    server = live_server([
        step("ok", "progress.py", name="Good step"),
        step("badre", "progress.py", name="Bad regex", progress_patterns={"total": "^T: (?P<total>\\d+"}),
        step("novenv", "progress.py", name="No venv", venv="ghost_env"),
    ])
    driver = browser
    driver.get(server.url + "/")
    assert "bad regex" in card(driver, "badre").text
    assert "venv 'ghost_env' is unknown" in card(driver, "novenv").text
    assert not card(driver, "badre").find_element(By.CSS_SELECTOR, '[data-action="run"]').is_enabled()
    assert card(driver, "ok").find_element(By.CSS_SELECTOR, '[data-action="run"]').is_enabled()
    driver.save_screenshot(str(artifacts / "dashboard_problems.png"))
    assert js_errors(driver) == []


def test_run_all_from_the_page(live_server, browser, artifacts):
    server = live_server([step("one", "progress.py", "--items", "2", "--delay", "0.05", name="First"),
                          step("two", "progress.py", "--items", "2", "--delay", "0.05", name="Second")])
    driver = browser
    driver.get(server.url + "/")
    driver.find_element(By.ID, "run-all").click()
    wait_until(driver, lambda d: "succeeded" in d.find_element(By.ID, "sequence").text, timeout=30)
    assert field(driver, "one", "status") == "succeeded" and field(driver, "two", "status") == "succeeded"
    assert driver.find_element(By.ID, "run-all").is_enabled()
    driver.save_screenshot(str(artifacts / "dashboard_run_all.png"))
    assert js_errors(driver) == []


def test_system_panel_fills_in(live_server, browser):
    server = live_server([step("one", "progress.py")])
    driver = browser
    driver.get(server.url + "/")
    wait_until(driver, lambda d: "%" in d.find_element(By.CSS_SELECTOR, '#system [data-field="cpu"]').text)
    memory = driver.find_element(By.CSS_SELECTOR, '#system [data-field="memory"]').text
    assert "GiB" in memory
    assert driver.find_element(By.CSS_SELECTOR, '#system [data-field="gpu"]').text.startswith("none found")

