"""Log files: the list, a tail or a follow of one, and the raw download."""
from flask import Blueprint, jsonify, request, send_file

from .. import logfiles
from ..service import APP_LOG
from . import dashboard
from .api import read_log

bp = Blueprint("logs", __name__)


def _error(status: int, message: str):
    response = jsonify(error=message)
    response.status_code = status
    return response


def resolve_request_path():
    """The file the request names (?run=ID or ?path=REL), or an error response."""
    svc = dashboard()
    run_id = request.args.get("run")
    try:
        if run_id:
            if not run_id.isdigit():
                return None, _error(400, "run must be a run id")
            path = svc.run_log(int(run_id))
            if path is None:
                return None, _error(404, f"run {run_id} has no log file")
            return path, None
        return logfiles.resolve(svc.logs_dir, request.args.get("path") or APP_LOG), None
    except logfiles.UnsafePath as exc:
        svc.log.warning("refused log path %r from %s: %s", request.args.get("path"), request.remote_addr, exc)
        return None, _error(403, f"refused: {exc}")
    except FileNotFoundError:
        return None, _error(404, "no such log file")


@bp.get("/api/logs")
def sources():
    svc = dashboard()
    return jsonify(
        app_log=APP_LOG,
        steps=[{"id": s.id, "name": s.name} for s in svc.registry.steps],
        files=logfiles.list_files(svc.logs_dir),
    )


@bp.get("/api/logs/file")
def read_file():
    path, error = resolve_request_path()
    if error is not None:
        return error
    return jsonify(**read_log(path, dashboard().logs_dir))


@bp.get("/logs/download")
def download():
    path, error = resolve_request_path()
    if error is not None:
        return error
    # Raw bytes as text/plain attachment: never rendered as a page.
    return send_file(path, mimetype="text/plain", as_attachment=True, download_name=path.name, max_age=0)
