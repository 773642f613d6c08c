"""Every route answers malformed values with a 4xx and one line, never a 500
with a traceback in app.log: ids beyond SQLite's integers, digits that are not
ASCII, very long paths, NUL bytes (issue 10, item 9)."""
import re

import pytest

ODD_VALUES = ["99999999999999999999999", "9223372036854775808", "-1", "²", "٣", " 3", "1_0", "x" * 8000,
              "%00", "\u202e", "..", "0"]
ODD_QUERIES = ["run", "page", "path", "tail", "after", "limit", "offset", "step", "status", "folder", "level"]
SAME_SITE = {"Origin": "http://localhost"}


def urls(app):
    """Every GET/POST route of the app, with each variable replaced by each odd value."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in sorted(rule.methods & {"GET", "POST"}):
            if not rule.arguments:
                yield method, rule.rule
                continue
            for value in ODD_VALUES:
                yield method, re.sub(r"<[^>]+>", value.replace("/", "_"), rule.rule)


def test_every_route_answers_odd_ids_and_queries_without_a_server_error(app, paths):
    client = app.test_client()
    seen = 0
    for method, url in urls(app):
        if url.startswith("/api/events"):
            continue  # a stream; its own tests cover it
        for query in [""] + [f"?{name}={value}" for name in ODD_QUERIES for value in ODD_VALUES[:6] + ["x" * 8000]]:
            call = client.get if method == "GET" else client.post
            kwargs = {"headers": SAME_SITE} if method == "POST" else {}
            if method == "POST" and "/run" in url:
                continue  # would start runs; covered by the API tests
            response = call(url + query, **kwargs)
            seen += 1
            assert response.status_code < 500, (method, url + query[:80], response.status_code)
            response.close()
    assert seen > 300
    log = (paths["logs"] / "app.log").read_text()
    assert "Traceback" not in log and "failed" not in log


@pytest.mark.parametrize("url, status, words", [
    ("/api/runs/99999999999999999999999", 404, None),
    ("/api/runs/9223372036854775807", 404, None),
    ("/api/logs/file?run=99999999999999999999999", 400, "run must be a run id"),
    ("/api/logs/file?run=²", 400, "run must be a run id"),
    ("/api/logs/file?path=" + "x" * 8000, 403, "too long"),
    ("/history?page=99999999999999999999999", 400, "page must be an integer"),
    ("/history?page=٣", 400, "page must be an integer"),
    ("/api/runs?limit=1e3", 400, "limit must be an integer"),
])
def test_odd_values_get_a_clear_answer(client, url, status, words):
    response = client.get(url)
    assert response.status_code == status
    if words:
        assert words in response.get_data(as_text=True)


def test_the_logs_page_says_an_odd_run_is_not_a_run(client):
    html = client.get("/logs?run=" + "9" * 30).get_data(as_text=True)
    assert "a run is a number" in html or "There is no run" in html


def test_a_log_named_with_percent_signs_opens_as_listed(client, paths):
    (paths["logs"] / "a%41b.log").write_text("percent line\n")
    listed = [f["path"] for f in client.get("/api/logs").get_json()["files"]]
    assert "a%41b.log" in listed
    from urllib.parse import quote
    data = client.get("/api/logs/file?path=" + quote("a%41b.log")).get_json()
    assert [line["text"] for line in data["lines"]] == ["percent line"]


def test_a_huge_line_is_shortened_on_the_page_and_whole_in_the_download(client, paths):
    huge = "y" * 3_000_000
    (paths["logs"] / "big.log").write_text(f"start\n{huge}\nend\n")
    page = client.get("/logs?path=big.log")
    assert page.status_code == 200 and len(page.data) < 100_000
    assert "more characters: download the file for the whole line" in page.get_data(as_text=True)
    data = client.get("/api/logs/file?path=big.log").get_json()
    assert len(data["lines"][1]["text"]) < 5000
    assert len(client.get("/logs/download?path=big.log").data) == len(huge) + len("start\n\nend\n")
