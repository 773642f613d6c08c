"""The Logs page says what it shows, and says it in words when it shows nothing
(HTML; what its script does is in test_browser_pages.py)."""
import re

from dash_support import step


def selected(html: str, select_id: str) -> list[str]:
    """The texts of the selected options of a select."""
    body = html.split(f'id="{select_id}"', 1)[1].split("</select>", 1)[0]
    return re.findall(r"<option [^>]*selected[^>]*>([^<]*)</option>", body)


def run_to_end(app, step_id="p"):
    run = app.extensions["dashboard"].runner.launch(step_id)
    assert run.done.wait(20)
    return run


def test_other_files_shows_the_newest_file_and_no_error(make_app, paths):
    app = make_app([step("p", "progress.py", "--items", "1")])
    run = run_to_end(app)
    newest = paths["logs"] / "z-newest.log"
    newest.write_text("the newest file's line\n")
    html = app.test_client().get("/logs?step=_files").get_data(as_text=True)
    assert 'id="log-error"' not in html and "choose a file" not in html
    assert selected(html, "log-step") == ["Other files in logs/"]
    assert selected(html, "log-path") == ["z-newest.log (23 B)"], "the file select names the file shown"
    assert '<span id="log-name">z-newest.log</span>' in html and "the newest file&#39;s line" in html
    assert 'data-path="z-newest.log"' in html and 'href="/logs/download?path=z-newest.log"' in html
    other = app.test_client().get(f"/logs?step=_files&path=p/run_{run.id:05d}_").get_data(as_text=True)
    assert "There is no file p/run_" in other  # a file that is not there is said as such


def test_other_files_when_there_is_none_yet(make_app, paths):
    app = make_app([step("p", "progress.py")])
    for path in paths["logs"].iterdir():
        path.unlink()
    html = app.test_client().get("/logs?step=_files").get_data(as_text=True)
    assert '<p class="notice" id="log-notice">There is no log file in the logs folder yet.</p>' in html
    assert 'id="log-error"' not in html


def test_a_filter_that_matches_nothing_says_so(make_app):
    app = make_app([step("p", "progress.py", "--items", "2")])
    run = run_to_end(app)
    client = app.test_client()
    html = client.get(f"/logs?run={run.id}&filter=no+such+text").get_data(as_text=True)
    assert re.search(r'<p class="notice" id="log-empty">No matching lines: no line contains “no such text” '
                     r'in this file\.</p>', html)
    assert re.search(r'<pre id="log" class="log" hidden', html), "no empty box"
    html = client.get(f"/logs?run={run.id}&level=error").get_data(as_text=True)
    assert "No matching lines: no error in this file." in html
    html = client.get(f"/logs?run={run.id}&level=warning&filter=video").get_data(as_text=True)
    assert "No matching lines: no warning or error contains “video” in this file." in html
    # A filter that matches: the box, and the note hidden (the page's script shows it if needed).
    html = client.get(f"/logs?run={run.id}&filter=SUMMARY").get_data(as_text=True)
    assert '<p class="notice" id="log-empty" hidden></p>' in html and re.search(r'<pre id="log" class="log"\s', html)


def test_an_unknown_run_is_said_and_not_shown_as_app_log(make_app):
    client = make_app([step("p", "progress.py")]).test_client()
    html = client.get("/logs?run=999").get_data(as_text=True)
    assert '<p class="notice error" id="log-error">There is no run #999 in the history.</p>' in html
    assert selected(html, "log-step") == ["Run #999 (not in the history)"]
    assert 'id="log"' not in html and 'id="log-download"' not in html and "no such log file" not in html
    html = client.get("/logs?run=abc").get_data(as_text=True)
    assert "There is no run “abc”: a run is a number." in html


def test_a_run_whose_log_file_is_gone(make_app, paths):
    app = make_app([step("p", "progress.py", "--items", "1", name="Prog")])
    run = run_to_end(app)
    (paths["logs"] / run.log_rel).unlink()
    html = app.test_client().get(f"/logs?run={run.id}").get_data(as_text=True)
    assert f"The log file of run #{run.id} ({run.log_rel}) is no longer in the logs folder." in html
    assert selected(html, "log-step") == ["Prog"], "the run's own step, not app.log"
    assert selected(html, "log-run")[0].startswith(f"#{run.id} · ")


def test_an_error_inside_a_page_is_the_site_s_own_500(make_app):
    app = make_app([step("p", "progress.py")])

    def broken():
        raise RuntimeError("a bug")

    app.add_url_rule("/broken", view_func=broken)
    response = app.test_client().get("/broken")
    html = response.get_data(as_text=True)
    assert response.status_code == 500 and "<h1>Error 500</h1>" in html and "app.log" in html
    assert 'class="brand"' in html
