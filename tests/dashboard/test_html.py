"""The pages as HTML: what they render, escaped, without any outside resource."""
import json
import re
from html.parser import HTMLParser

from dash_support import ROOT, step, wait_for

XSS = "<script>alert(1)</script>.mp4"


class Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []
        self.scripts = []
        self._in_state = False
        self.state = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "script":
            self.scripts.append(attrs)
            self._in_state = attrs.get("id") == "initial-state"

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_state = False

    def handle_data(self, data):
        if self._in_state:
            self.state += data


def parse(html: str) -> Collect:
    c = Collect()
    c.feed(html)
    return c


def run_to_end(app, step_id):
    run = app.extensions["dashboard"].runner.launch(step_id)
    assert run.done.wait(20)
    return run


def test_dashboard_has_a_card_per_step_and_its_state(make_app):
    app = make_app([step("one", "progress.py", name="First step"), step("two", "exit_code.py", "3", name="Second")])
    run_to_end(app, "one")
    html = app.test_client().get("/").get_data(as_text=True)
    page = parse(html)
    cards = [a for t, a in page.tags if t == "article"]
    assert [c["data-step"] for c in cards] == ["one", "two"]
    assert "First step" in html and "Second" in html
    assert "100.0 %" in html and "3 succeeded · 0 failed · 0 skipped of 3" in html
    state = json.loads(page.state)
    assert [s["id"] for s in state["steps"]] == ["one", "two"]
    assert state["steps"][0]["run"]["status"] == "succeeded"
    assert [s.get("src") for s in page.scripts if s.get("src")] == [
        "/static/js/run_options.js", "/static/js/notify.js", "/static/js/dashboard.js"]


def test_names_from_files_and_lines_are_escaped_in_the_html(make_app, paths):
    (paths["projects"] / "<script>alert(1)<").mkdir()
    (paths["projects"] / "<script>alert(1)<" / "script>.mp4").write_bytes(b"")
    app = make_app([step("x", "lister.py", "--input-dir", "{projects_dir}", name="<i>step</i>")])
    run = run_to_end(app, "x")
    client = app.test_client()
    for url in ("/", f"/logs?run={run.id}", "/history"):
        html = client.get(url).get_data(as_text=True)
        assert "<script>alert(1)" not in html, url
        assert "<i>step</i>" not in html, url
    html = client.get("/").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.mp4" in html
    page = parse(html)
    # The embedded state is JSON that cannot close its script element.
    assert "</script>" not in page.state and XSS in json.dumps(json.loads(page.state), ensure_ascii=False)
    assert len(page.scripts) == 5  # the state, the options' declarations, three scripts


def test_history_table_links_each_run_to_its_log(make_app):
    app = make_app([step("ok", "progress.py", name="Good"), step("bad", "exit_code.py", "3", name="Bad")])
    ok = run_to_end(app, "ok")
    bad = run_to_end(app, "bad")
    client = app.test_client()
    html = client.get("/history").get_data(as_text=True)
    rows = re.findall(r'<tr data-run="(\d+)">', html)
    assert rows == [str(bad.id), str(ok.id)]
    assert "exit code 3" in html and f'href="/logs?run={bad.id}"' in html
    assert f'href="/logs/download?run={ok.id}"' in html
    html = client.get("/history?status=failed").get_data(as_text=True)
    assert re.findall(r'<tr data-run="(\d+)">', html) == [str(bad.id)]
    html = client.get("/history?step=ok").get_data(as_text=True)
    assert re.findall(r'<tr data-run="(\d+)">', html) == [str(ok.id)]
    assert "No run yet matches" in client.get("/history?status=interrupted").get_data(as_text=True)


def test_history_pages_through_many_runs(make_app):
    app = make_app([step("ok", "exit_code.py", "0")])
    store = app.extensions["dashboard"].store
    for i in range(120):
        rid = store.create("ok", 1_700_000_000 + i)
        store.update(rid, status="succeeded", ended_at=1_700_000_001 + i, return_code=0, reason="exit code 0")
    client = app.test_client()
    first = client.get("/history").get_data(as_text=True)
    assert len(re.findall(r'<tr data-run=', first)) == 50 and "page 1 of 3" in first
    last = client.get("/history?page=3").get_data(as_text=True)
    assert len(re.findall(r"<tr data-run=", last)) == 20 and "older →" not in last and "← newer" in last


def test_log_viewer_pages(make_app):
    app = make_app([step("p", "progress.py", "--fail", "2", name="Prog")])
    run = run_to_end(app, "p")
    client = app.test_client()
    html = client.get("/logs").get_data(as_text=True)
    assert "dashboard ready" in html and 'id="log"' in html  # app.log by default
    html = client.get("/logs?step=p").get_data(as_text=True)
    assert "SUMMARY: 2/3 succeeded, 1 failed, 0 skipped" in html and f'data-run="{run.id}"' in html
    html = client.get(f"/logs?run={run.id}&level=error").get_data(as_text=True)
    assert '<span class="lvl-error">FAILED: 2/3: demo/video 2.mp4' in html
    assert "SUMMARY" not in html.split('id="log"')[1]
    html = client.get("/logs?step=_files").get_data(as_text=True)
    assert f"p/run_{run.id:05d}_" in html
    html = client.get("/logs?path=../../etc/passwd").get_data(as_text=True)
    assert "refused" in html and "root:" not in html


def test_log_viewer_says_when_a_step_has_no_run(make_app):
    client = make_app([step("p", "progress.py")]).test_client()
    html = client.get("/logs?step=p").get_data(as_text=True)
    assert '<p class="notice" id="log-notice">No run of this step yet.</p>' in html
    assert 'id="log-error"' not in html, "nothing is wrong: a note, not an error"


def test_pages_need_nothing_from_the_internet():
    for folder in ("templates", "static"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in (".html", ".css", ".js", ".svg"):
                text = path.read_text()
                # The SVG namespace is a name, not something fetched.
                text = text.replace('xmlns="http://www.w3.org/2000/svg"', "")
                urls = re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text)
                assert urls == [], f"{path}: {urls}"
                assert "@import" not in text


def test_an_unknown_page_is_the_site_s_own_404(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    page = parse(html)
    assert ("a", {"class": "brand", "href": "/"}) in page.tags, "the site's header, from base.html"
    assert ("link", {"rel": "stylesheet", "href": "/static/css/style.css"}) in page.tags
    assert "<title>Not found · Video workflow</title>" in html and "<h1>Page not found</h1>" in html
    assert re.search(r'id="error-sentence">There is no page at this address\. '
                     r'<a href="/">Back to the dashboard</a>\.</p>', html)
    assert "Werkzeug" not in html and "The requested URL was not found" not in html
    wrong = client.post("/history")
    assert wrong.status_code == 405 and "does not answer that kind of request" in wrong.get_data(as_text=True)
    # Scripts keep their JSON under /api/.
    api = client.get("/api/no-such-thing")
    assert api.status_code == 404 and api.is_json and "error" in api.get_json()


def test_live_state_reaches_the_page_state(make_app):
    app = make_app([step("s", "sleeper.py", name="Sleeper")])
    svc = app.extensions["dashboard"]
    run = svc.runner.launch("s")
    wait_for(lambda: run.snapshot()["total"] == 1 and run.snapshot()["item"])  # two lines, maybe two reads
    html = app.test_client().get("/").get_data(as_text=True)
    assert 'class="badge status-running"' in html
    assert "long/video 1.mp4" in html
    svc.runner.cancel("s")
    assert run.done.wait(10)
