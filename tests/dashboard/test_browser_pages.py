"""The pages in headless Chromium for what a newcomer tripped over (issue 9):
a missing projects folder, the log viewer's sources, the words on a card.

Screenshots go to artifacts/dashboard/ (git-ignored).
"""
import time

import pytest
from dash_support import step
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

pytestmark = pytest.mark.browser


def wait_until(driver, predicate, timeout=20, message="condition"):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: predicate(d), message=message)


def card(driver, step_id):
    return driver.find_element(By.ID, f"step-{step_id}")


def run_button(driver, step_id):
    return card(driver, step_id).find_element(By.CSS_SELECTOR, '[data-action="run"]')


def js_errors(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_a_missing_projects_folder_keeps_run_disabled_until_it_is_created(live_server, browser, artifacts, paths):
    paths["projects"].rmdir()
    server = live_server([step("uses", "lister.py", "--input-dir", "{projects_dir}", name="Lister")],
                         SSE_SYSTEM_S=0.5)
    driver = browser
    driver.get(server.url + "/")
    notice = driver.find_element(By.ID, "projects-problem")
    assert notice.is_displayed()
    assert f"The projects folder {paths['projects']} does not exist." in notice.text
    assert f"mkdir -p {paths['projects']}" in notice.text
    assert not run_button(driver, "uses").is_enabled()
    assert "does not exist" in card(driver, "uses").text  # the reason, on the card itself
    assert not driver.find_element(By.ID, "run-all").is_enabled()
    assert driver.find_element(By.ID, "videos-problem").is_displayed()
    assert "Lister cannot start" in driver.find_element(By.ID, "run-all-blocked").text
    driver.save_screenshot(str(artifacts / "projects_folder_missing.png"))

    paths["projects"].mkdir()  # no reload: the page hears of it
    wait_until(driver, lambda d: run_button(d, "uses").is_enabled(), timeout=10, message="Run to be enabled")
    assert not driver.find_element(By.ID, "projects-problem").is_displayed()
    assert not driver.find_element(By.ID, "videos-problem").is_displayed()
    assert driver.find_element(By.ID, "run-all").is_enabled()
    assert driver.find_element(By.ID, "run-all-blocked").text == ""
    assert "does not exist" not in card(driver, "uses").text
    assert js_errors(driver) == []


def test_log_viewer_other_files_filter_with_no_match_and_unknown_run(live_server, browser, artifacts):
    server = live_server([step("long", "sleeper.py", name="Long run")])
    run = server.app.extensions["dashboard"].runner.launch("long")
    driver = browser
    driver.get(f"{server.url}/logs")
    Select(driver.find_element(By.ID, "log-step")).select_by_visible_text("Other files in logs/")
    wait_until(driver, lambda d: d.find_elements(By.ID, "log-path"), message="the file select")
    assert driver.find_elements(By.ID, "log-error") == []
    shown = driver.find_element(By.ID, "log-name").text
    assert Select(driver.find_element(By.ID, "log-path")).first_selected_option.get_attribute("value") == shown
    assert driver.find_element(By.ID, "log").text.strip() != ""
    driver.save_screenshot(str(artifacts / "log_viewer_other_files.png"))

    # A filter that matches nothing yet: said in words, then replaced by the line once it comes.
    frames = wait_until(driver, lambda d: run.snapshot()["lines"] >= 5 and run.snapshot()["item_done"])
    target = f": {frames + 30}/100000"  # about 6 s ahead: still to come when the page has reloaded, even on a loaded machine
    driver.get(f"{server.url}/logs?run={run.id}")
    box = driver.find_element(By.ID, "log-filter")
    box.send_keys(target)
    box.submit()
    empty = wait_until(driver, lambda d: d.find_element(By.ID, "log-empty"), message="the reloaded page")
    assert empty.is_displayed() and empty.text == f"No matching lines: no line contains “{target}” in this file."
    assert not driver.find_element(By.ID, "log").is_displayed()
    driver.save_screenshot(str(artifacts / "log_viewer_no_match.png"))
    wait_until(driver, lambda d: target in d.find_element(By.ID, "log").text, timeout=40, message="the line")
    assert not driver.find_element(By.ID, "log-empty").is_displayed()
    server.app.extensions["dashboard"].runner.cancel("long")
    assert run.done.wait(10)

    driver.get(f"{server.url}/logs?run=999")
    assert driver.find_element(By.ID, "log-error").text == "There is no run #999 in the history."
    assert Select(driver.find_element(By.ID, "log-step")).first_selected_option.text == "Run #999 (not in the history)"
    assert driver.find_elements(By.ID, "log") == []
    assert js_errors(driver) == []


def test_the_404_page_looks_like_the_site(live_server, browser, artifacts):
    server = live_server([step("p", "progress.py")])
    driver = browser
    driver.get(f"{server.url}/no-such-page")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Page not found"
    assert driver.find_element(By.ID, "error-sentence").text == "There is no page at this address. Back to the dashboard."
    driver.save_screenshot(str(artifacts / "page_not_found.png"))
    driver.find_element(By.LINK_TEXT, "Back to the dashboard").click()
    wait_until(driver, lambda d: d.find_elements(By.ID, "step-p"), message="the dashboard")
    # The browser notes the 404 itself as an error: that one, and nothing else.
    errors = js_errors(driver)
    assert [e["source"] for e in errors] == ["network"] and "/no-such-page" in errors[0]["message"]


def field(driver, step_id, name):
    return card(driver, step_id).find_element(By.CSS_SELECTOR, f'[data-field="{name}"]').text


def test_a_finished_card_in_words_and_no_eta_while_cancelling(live_server, browser, artifacts):
    server = live_server([
        step("mixed", "progress.py", "--items", "2", "--fail", "2", "--frames", "30", "--delay", "0.02",
             name="Mixed", exit_codes={"1": "at least one video failed"}),
        step("stubborn", "progress.py", "--items", "1", "--frames", "600", "--delay", "0.05", "--ignore-term",
             name="Stubborn", cancel_grace_s=3),
    ])
    driver = browser
    driver.get(server.url + "/")
    run_button(driver, "mixed").click()
    wait_until(driver, lambda d: field(d, "mixed", "status") == "failed", message="the run to end")
    assert field(driver, "mixed", "outcome") == "Finished with failures: 1 of 2 videos failed; 1 video analysed, 10 scenes"
    assert field(driver, "mixed", "reason") == "exit code 1 (at least one video failed)"
    lines = field(driver, "mixed", "lines")
    assert "FRAMES:" not in lines and lines.endswith("SUMMARY: 1/2 succeeded, 1 failed, 0 skipped")
    driver.save_screenshot(str(artifacts / "card_in_words.png"))

    run_button(driver, "stubborn").click()
    wait_until(driver, lambda d: field(d, "stubborn", "eta") != "—", timeout=20, message="an ETA")
    card(driver, "stubborn").find_element(By.CSS_SELECTOR, '[data-action="cancel"]').click()
    wait_until(driver, lambda d: field(d, "stubborn", "status") == "cancelling", message="the cancel")
    for _ in range(10):  # while it ignores SIGTERM, for a second: no ETA at all
        assert field(driver, "stubborn", "eta") == "—"
        assert field(driver, "stubborn", "outcome") == "Cancelling: waiting for the step to stop"
        time.sleep(0.1)
    wait_until(driver, lambda d: field(d, "stubborn", "status") == "cancelled", timeout=15, message="the end")
    assert field(driver, "stubborn", "outcome").startswith("Cancelled: you stopped it")
    assert js_errors(driver) == []


def test_the_page_reconnects_after_its_stream_is_refused_and_shows_the_truth_again(live_server, browser):
    """Issue 10, item 6: a browser's EventSource that gets a 503 never retries by
    itself; the page's script does, and the card catches up."""
    server = live_server([step("long", "sleeper.py", name="Long run")], SSE_MAX_CLIENTS=2)
    app, svc = server.app, server.app.extensions["dashboard"]
    driver = browser
    driver.get(server.url + "/")
    connection = driver.find_element(By.ID, "connection")
    wait_until(driver, lambda d: app.extensions["sse_clients"].count == 1, message="the page's stream")
    app.config["SSE_MAX_CLIENTS"] = 0  # every new stream is refused (503)
    app.extensions["sse_clients"].end_all()
    svc.bus.publish("_evict")
    wait_until(driver, lambda d: "trying again" in connection.text, message="the page to say it retries")
    run = svc.runner.launch("long")  # meanwhile, a run starts
    app.config["SSE_MAX_CLIENTS"] = 2
    wait_until(driver, lambda d: not connection.is_displayed(), timeout=30, message="the stream to be back")
    wait_until(driver, lambda d: "running" in card(d, "long").text.lower(), timeout=10, message="the run on the card")
    svc.runner.cancel("long")
    assert run.done.wait(20)
    refused = [e for e in js_errors(driver) if "503" not in e["message"]]
    assert refused == []
