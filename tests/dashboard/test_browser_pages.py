"""The pages in headless Chromium for what a newcomer tripped over (issue 9):
a missing projects folder, the log viewer's sources, the words on a card.

Screenshots go to artifacts/dashboard/ (git-ignored).
"""
import pytest
from dash_support import step
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

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
