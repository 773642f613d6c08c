"""Who may do what: log paths, cross-site requests, the Host header, the token."""
import os

import pytest

from dashboard.security import StartupError

TOKEN = "t0ken-for-the-tests-0123456789"


@pytest.fixture
def logs(paths, app):
    """A logs folder with a real log, a secret outside it, and symlinks."""
    logs = paths["logs"]
    (logs / "step3").mkdir(parents=True, exist_ok=True)
    (logs / "step3" / "run.log").write_text("line one\nline two\n")
    secret = logs.parent / "secret.txt"
    secret.write_text("top secret\n")
    os.symlink(secret, logs / "out.log")
    os.symlink(logs.parent, logs / "outdir")
    os.symlink(logs / "step3" / "run.log", logs / "inside.log")
    return logs


TRAVERSALS = [
    "../secret.txt",
    "step3/../../secret.txt",
    "/etc/passwd",
    "%2e%2e%2fsecret.txt",
    "%252e%252e%252fsecret.txt",
    "%25252e%25252e%25252fsecret.txt",
    "..%2fsecret.txt",
    "..\\secret.txt",
    "step3\\..\\..\\secret.txt",
    "C:\\Windows\\win.ini",
    "out.log",
    "outdir/secret.txt",
    "step3/run.log%00.png",
]


@pytest.mark.parametrize("path", TRAVERSALS)
@pytest.mark.parametrize("endpoint", ["/api/logs/file", "/logs/download"])
def test_paths_out_of_the_logs_folder_are_refused(client, logs, endpoint, path):
    # The query string is sent as written: "%25" arrives as "%", "%2e" as ".".
    response = client.get(f"{endpoint}?path={path}")
    assert response.status_code in (400, 403, 404), response.status_code
    body = response.get_data(as_text=True)
    assert "top secret" not in body and "root:" not in body


def test_traversal_attempts_are_refused_with_403_and_logged(client, logs, service):
    for path in ("../secret.txt", "%2e%2e%2fsecret.txt", "out.log", "/etc/passwd"):
        assert client.get(f"/api/logs/file?path={path}").status_code == 403, path
    # Decoded once (by Flask): what is left is a strange name inside logs/, not a way out.
    assert client.get("/api/logs/file?path=%252e%252e%252fsecret.txt").status_code == 404
    app_log = (logs / "app.log").read_text()
    assert "refused log path" in app_log


def test_files_inside_the_logs_folder_are_served(client, logs):
    data = client.get("/api/logs/file?path=step3/run.log").get_json()
    assert [line["text"] for line in data["lines"]] == ["line one", "line two"]
    assert client.get("/api/logs/file?path=inside.log").status_code == 200  # a symlink that stays inside
    download = client.get("/logs/download?path=step3/run.log")
    assert download.status_code == 200 and download.data == b"line one\nline two\n"
    assert download.headers["Content-Disposition"].startswith("attachment")
    assert download.mimetype == "text/plain"
    listing = client.get("/api/logs").get_json()
    names = [f["path"] for f in listing["files"]]
    assert "step3/run.log" in names and "out.log" not in names and "outdir/secret.txt" not in names


def test_the_log_viewer_page_refuses_too(client, logs):
    response = client.get("/logs?path=../secret.txt")
    assert "top secret" not in response.get_data(as_text=True)
    assert "refused" in response.get_data(as_text=True)


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://localhost:9999"},
    {"Origin": "https://localhost"},
    {"Referer": "http://evil.example/page"},
])
def test_cross_site_posts_are_refused(client, headers):
    for url in ("/api/steps/progress/run", "/api/steps/progress/cancel", "/api/run-all", "/api/run-all/cancel"):
        response = client.post(url, headers=headers)
        assert response.status_code == 403, (url, headers)
    assert client.get("/api/steps/progress").get_json()["run"] is None, "a refused request still ran the step"


def test_same_site_posts_and_scripts_are_served(client):
    assert client.post("/api/steps/progress/run", headers={"Origin": "http://localhost"}).status_code == 202
    assert client.post("/api/steps/fail/run", headers={"Referer": "http://localhost/"}).status_code == 202
    # A script sending neither header, on loopback:
    assert client.post("/api/run-all").status_code in (202, 409)


def test_a_foreign_host_header_is_refused_on_loopback(client):
    # DNS rebinding: a page on evil.example whose name now points at 127.0.0.1.
    assert client.get("/api/steps", headers={"Host": "evil.example:5000"}).status_code == 403
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 403
    for host in ("localhost:5000", "127.0.0.1:5000", "[::1]:5000", "127.0.0.1"):
        assert client.get("/api/steps", headers={"Host": host}).status_code == 200, host


def test_a_non_loopback_host_needs_a_token(make_app):
    with pytest.raises(StartupError, match="needs an access token in DASHBOARD_TOKEN"):
        make_app(HOST="0.0.0.0")
    with pytest.raises(StartupError, match="too short"):
        make_app(HOST="0.0.0.0", TOKEN="short")


def test_the_token_is_checked_on_every_request(make_app):
    client = make_app(HOST="0.0.0.0", TOKEN=TOKEN).test_client()
    for method, url in (("get", "/"), ("get", "/api/steps"), ("get", "/api/events"), ("get", "/static/css/style.css"),
                        ("get", "/logs/download?path=app.log"), ("post", "/api/steps/progress/run")):
        assert getattr(client, method)(url).status_code == 401, url
    assert client.get("/api/steps", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
    assert client.get("/api/steps", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/api/steps", headers={"X-Dashboard-Token": TOKEN}).status_code == 200
    assert client.post("/api/steps/progress/run", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 202


def test_the_token_in_the_address_becomes_a_cookie(make_app):
    app = make_app(HOST="0.0.0.0", TOKEN=TOKEN)
    client = app.test_client()
    response = client.get(f"/history?token={TOKEN}&step=progress")
    assert response.status_code == 303
    assert response.headers["Location"] == "/history?step=progress"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    assert client.get("/history?step=progress").status_code == 200
    assert client.get("/api/steps").status_code == 200
    assert app.test_client().get("/?token=wrong-token-0123456789").status_code == 401


def test_a_token_set_on_loopback_is_enforced_too(make_app):
    client = make_app(TOKEN=TOKEN).test_client()
    assert client.get("/api/steps").status_code == 401
    assert client.get("/api/steps", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_pages_carry_a_strict_content_security_policy(client):
    response = client.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert client.get("/api/steps").headers["Cache-Control"] == "no-store"
