"""Log files: the list, a tail or a follow of one, and the raw download."""
from pathlib import Path

from flask import Blueprint, abort, jsonify, request, send_file

from .. import logfiles
from ..service import APP_LOG
from . import dashboard, error, int_arg

bp = Blueprint("logs", __name__)


def read_log(path: Path, logs_dir: Path) -> dict:
    """Tail (or, with ?after=, what follows an offset) of a log file, filtered as the request asks."""
    keep = logfiles.make_filter(request.args.get("filter"), request.args.get("level"))
    tail = int_arg("tail", 200, 1, logfiles.MAX_TAIL)
    after = request.args.get("after")
    if after not in (None, ""):
        try:
            offset = max(0, int(after))
        except ValueError:
            abort(error(400, "after must be an integer"))
        data = logfiles.read_after(path, offset, keep)
        if data["reset"]:
            data = logfiles.tail(path, tail, keep)
            data["reset"] = True
    else:
        data = logfiles.tail(path, tail, keep)
    data["lines"] = [{"text": line, "level": logfiles.level_of(line)} for line in data["lines"]]
    data["path"] = path.relative_to(logs_dir.resolve()).as_posix()
    return data


def resolve_request_path():
    """The file the request names (?run=ID or ?path=REL), or an error response."""
    svc = dashboard()
    run_id = request.args.get("run")
    try:
        if run_id:
            if not run_id.isdigit():
                return None, error(400, "run must be a run id")
            path = svc.run_log(int(run_id))
            if path is None:
                return None, error(404, f"run {run_id} has no log file")
            return path, None
        return logfiles.resolve(svc.logs_dir, request.args.get("path") or APP_LOG), None
    except logfiles.UnsafePath as exc:
        svc.log.warning("refused log path %r from %s: %s", request.args.get("path"), request.remote_addr, exc)
        return None, error(403, f"refused: {exc}")
    except FileNotFoundError:
        return None, error(404, "no such log file")


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
