"""The video page in headless Chromium, on the sample's real STEP3 result:
plot, cuts, thumbnails; the page's scene rule equals the Python one; the
threshold slider changes the cuts; a cut added and one removed, saved, survive
a reload. Screenshot: artifacts/dashboard/video_page.png."""
import json

import pytest
from results_support import copy_sample_result, sample_result
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from dashboard.results import scene_rule

pytestmark = pytest.mark.browser
PAGE = "/videos/demo/sample.mp4"


def wait_until(driver, predicate, timeout=30, message="condition"):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: predicate(d), message=message)


def cut_count(driver) -> int:
    """The cuts listed, once the page has listed them all (it adds rows in slices)."""
    wait_until(driver, lambda d: d.find_element(By.ID, "cuts").get_attribute("data-complete") == "true",
               message="the whole cut list")
    return len(driver.find_elements(By.CSS_SELECTOR, "#cuts li.cut"))


def open_page(driver, url):
    driver.get(url + PAGE)
    wait_until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#cuts li.cut"), message="the cut list")


@pytest.fixture
def server(live_server, paths):
    copy_sample_result(sample_result(), paths["projects"])
    return live_server([])


def test_video_page_plot_cuts_thumbnails_threshold_and_review(server, browser, artifacts, paths):
    driver = browser
    driver.get("about:blank")
    driver.get_log("browser")  # what earlier tests' pages logged is theirs
    open_page(driver, server.url)
    assert driver.find_element(By.ID, "video-name").text == "demo/sample.mp4"
    assert cut_count(driver) == 107  # 108 scenes
    assert driver.find_element(By.ID, "scene-count").text == "108"
    drawn = driver.execute_script(
        "const c = document.getElementById('plot'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n;")
    assert drawn > 500, "the plot is drawn"
    wait_until(driver, lambda d: d.execute_script(
        "return [...document.querySelectorAll('#cuts img')].slice(0, 4).every(i => i.complete && i.naturalWidth === 160)"),
        timeout=60, message="the first thumbnails")
    assert driver.execute_script("return document.getElementById('player').src").endswith("/media/demo/sample.mp4")

    # The page's rule is the official one: equal to the Python rule at every threshold.
    doc = json.loads((paths["projects"] / "demo" / "sample.scenes.json").read_text())
    for threshold in (0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95):
        in_page = driver.execute_script(
            "const s = window.videoPage; return SceneRule.scenesAt(s.data.predictions.single_sparse, arguments[0], s.frames);",
            threshold)
        assert [tuple(s) for s in in_page] == scene_rule.scenes_at(doc["predictions"]["single_frame"], threshold)

    # The slider, moved with the keyboard as a user would: fewer cuts at a higher threshold.
    slider = driver.find_element(By.ID, "threshold")
    slider.send_keys(*[Keys.ARROW_RIGHT] * 40)
    wait_until(driver, lambda d: d.find_element(By.ID, "threshold-value").text == "0.90", message="threshold 0.90")
    high = cut_count(driver)
    expected = len(scene_rule.scenes_at(doc["predictions"]["single_frame"], 0.9)) - 1
    assert high == expected < 107
    assert "Not saved" in driver.find_element(By.ID, "changes").text
    driver.find_element(By.ID, "reset-list").click()
    assert cut_count(driver) == 107
    assert driver.find_element(By.ID, "threshold-value").text == "0.50"

    # Add a cut at the playhead, remove another, save, reload.
    driver.execute_script("const p = document.getElementById('player'); p.pause(); p.currentTime = (1000 - 0.5) / 25;")
    wait_until(driver, lambda d: "frame 1000 " in d.find_element(By.ID, "playhead").text + " ",
               message="the player at frame 1000")
    driver.find_element(By.ID, "add-cut").click()
    assert cut_count(driver) == 108
    assert driver.find_elements(By.CSS_SELECTOR, '#cuts li[data-frame="1000"]')
    first_cut = driver.find_element(By.CSS_SELECTOR, "#cuts li.cut").get_attribute("data-frame")
    driver.find_element(By.CSS_SELECTOR, '#cuts li.cut [data-action="remove"]').click()
    assert cut_count(driver) == 107
    driver.find_element(By.ID, "save-review").click()
    wait_until(driver, lambda d: "Review saved" in d.find_element(By.ID, "message").text, message="the save")
    assert (paths["projects"] / "demo" / "sample.review.json").is_file()

    open_page(driver, server.url)
    assert cut_count(driver) == 107
    assert driver.find_elements(By.CSS_SELECTOR, '#cuts li[data-frame="1000"]')
    assert not driver.find_elements(By.CSS_SELECTOR, f'#cuts li[data-frame="{first_cut}"]')
    assert "Showing the review saved" in driver.find_element(By.ID, "review-state").text
    assert driver.find_element(By.ID, "export-source").text == "(the reviewed list)"
    assert driver.find_element(By.ID, "threshold-value").text == "0.50"
    driver.save_screenshot(str(artifacts / "video_page.png"))
    # A thumbnail still being made answers 503 and the page asks again: expected, not an error.
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"
              and not ("/frame?" in e["message"] and "503" in e["message"])]
    assert severe == []

    driver.get(server.url + "/videos")
    row = driver.find_element(By.CSS_SELECTOR, "#videos tbody tr")
    assert "analysed" in row.text and "reviewed" in row.text and "107" not in row.text.split()[0]
    driver.save_screenshot(str(artifacts / "videos_page.png"))
