"""The dashboard: a Flask app over a runner that launches each step in its own venv.

Flask is imported inside create_app only: the runner, the history and the
other parts below the web layer import this package without pulling Flask in.
"""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DEFAULTS = {
    "ROOT": str(ROOT),
    "WORKFLOW_CONFIG": str(ROOT / "config" / "workflow.json"),
    "PROJECTS_DIR": str(ROOT / "projects"),
    "LOGS_DIR": str(ROOT / "logs"),
    "DATABASE": str(ROOT / "data" / "runs.sqlite3"),
    "HOST": "127.0.0.1",
    "TOKEN": None,
    "ECHO_LOG": False,
    "NVIDIA_SMI": None,  # None: found on PATH
    "SSE_HEARTBEAT_S": 15.0,
    "SSE_MIN_INTERVAL_S": 0.05,
    "SSE_SYSTEM_S": 2.0,
    "SSE_MAX_CLIENTS": 64,
    "MAX_CONTENT_LENGTH": 1024 * 1024,  # request bodies: options and reviews are a few kB (a 413 beyond)
}


def _row_id_converter():
    """Flask's ``<int:...>`` for ids: ASCII digits only and at most SQLite's
    largest integer, so /api/runs/99999999999999999999999 is a 404, not an
    overflow deep in the database (a 500)."""
    from werkzeug.routing import IntegerConverter

    class RowId(IntegerConverter):
        regex = r"[0-9]+"

        def __init__(self, url_map, *args, **kwargs):
            kwargs.setdefault("max", 2**63 - 1)
            super().__init__(url_map, *args, **kwargs)

    return RowId


def create_app(test_config: dict | None = None):
    """Build the app. ``test_config`` overrides DEFAULTS (paths, host, token...).

    The token comes from the DASHBOARD_TOKEN environment variable unless given.
    A host that is not loopback without a token is refused.
    """
    from flask import Flask, got_request_exception, request

    from . import security
    from .service import Dashboard
    from .web import api, errors, events, logs, pages, video_pages, videos

    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    app.url_map.converters["int"] = _row_id_converter()  # before any route is added
    app.config.update(DEFAULTS)
    app.config["TOKEN"] = os.environ.get("DASHBOARD_TOKEN") or None
    if test_config:
        app.config.update(test_config)
    app.json.sort_keys = False
    security.check_startup(app.config["HOST"], app.config["TOKEN"])

    dashboard = Dashboard(
        root=Path(app.config["ROOT"]),
        workflow_path=Path(app.config["WORKFLOW_CONFIG"]),
        projects_dir=Path(app.config["PROJECTS_DIR"]),
        logs_dir=Path(app.config["LOGS_DIR"]),
        db_path=Path(app.config["DATABASE"]),
        echo=app.config["ECHO_LOG"],
        nvidia_smi=app.config["NVIDIA_SMI"],
        url=app.config.get("SERVER_URL"),
        subreaper=app.config.get("SUBREAPER", False),
    )
    app.extensions["dashboard"] = dashboard

    def log_exception(sender, exception, **extra):
        # An unexpected error in a request belongs in app.log, with its traceback.
        dashboard.log.error("request %s %s failed", request.method, request.path, exc_info=exception)

    got_request_exception.connect(log_exception, app, weak=False)

    @app.context_processor
    def history_problem():
        # A database damaged while running: the pages still work, and say so.
        return {"history_problem": dashboard.store.problem}

    security.init_app(app)
    for module in (pages, api, logs, events, videos, video_pages, errors):
        app.register_blueprint(module.bp)
    pages.register_filters(app)
    return app
