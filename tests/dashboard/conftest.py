"""Fixtures: each test gets a fresh SQLite file, logs folder and projects folder."""
import logging
import shutil
import tempfile
import threading

import pytest
from dash_support import ROOT, step, write_workflow
from werkzeug.serving import make_server

from dashboard import create_app
from dashboard.bus import EventBus
from dashboard.history import RunStore
from dashboard.registry import load_registry
from dashboard.runner import Runner

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = ROOT / "artifacts" / "dashboard"


@pytest.fixture
def paths(tmp_path):
    p = {
        "logs": tmp_path / "logs",
        "db": tmp_path / "data" / "runs.sqlite3",
        "projects": tmp_path / "projects",
        "workflow": tmp_path / "workflow.json",
    }
    p["projects"].mkdir()
    return p


def default_steps() -> list[dict]:
    return [
        step("progress", "progress.py", "--items", "3", "--delay", "0.01"),
        step("fail", "exit_code.py", "3", exit_codes={"3": "test failure"}),
    ]


@pytest.fixture
def make_app(paths):
    """make_app(steps=None, **config) -> a Flask app on this test's own folders."""
    apps = []

    def factory(steps=None, **config):
        if not paths["workflow"].exists() or steps is not None:
            write_workflow(paths["workflow"], steps if steps is not None else default_steps())
        settings = {
            "ROOT": str(ROOT),
            "WORKFLOW_CONFIG": str(paths["workflow"]),
            "PROJECTS_DIR": str(paths["projects"]),
            "LOGS_DIR": str(paths["logs"]),
            "DATABASE": str(paths["db"]),
            "TOKEN": None,
            "SSE_HEARTBEAT_S": 1.0,
            "NVIDIA_SMI": "",
        }
        settings.update(config)
        app = create_app(settings)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["dashboard"].close()


@pytest.fixture
def make_runner(tmp_path):
    """make_runner(*steps, venvs=None) -> a Runner (no Flask) on this test's own folders."""
    made = []

    def factory(*steps, venvs=None):
        wf = write_workflow(tmp_path / "wf.json", list(steps), venvs)
        store = RunStore(tmp_path / "runs.sqlite3")
        (tmp_path / "projects").mkdir(exist_ok=True)
        runner = Runner(load_registry(wf, ROOT), store, tmp_path / "logs", tmp_path / "projects", EventBus(),
                        logging.getLogger("test-runner"))
        made.append((runner, store))
        return runner

    yield factory
    for runner, store in made:
        runner.shutdown(timeout=10)
        store.close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def service(app):
    return app.extensions["dashboard"]


class LiveServer:
    """A real werkzeug server on 127.0.0.1 and an ephemeral port, in a thread."""

    def __init__(self, app):
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def stop(self):
        self.app.extensions["dashboard"].close()  # ends event streams, so their threads return
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def live_server(make_app):
    servers = []

    def start(steps=None, **config):
        server = LiveServer(make_app(steps, **config))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def browser(_chromium):
    """The session's Chromium on a blank page, its console emptied: what the
    previous test's page logged (its event stream retrying a server that was
    stopped) is not this test's."""
    _chromium.get("about:blank")
    _chromium.get_log("browser")
    return _chromium


@pytest.fixture(scope="session")
def _chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="dashboard-chromium-")
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-quic", "--window-size=1400,1000",
                f"--user-data-dir={profile}"):
        options.add_argument(arg)
    # Keep the browser's console, to fail on JavaScript errors.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def artifacts():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(autouse=True)
def _no_token_from_env(monkeypatch):
    # A token in the developer's shell must not change what the tests see.
    monkeypatch.delenv("DASHBOARD_TOKEN", raising=False)


