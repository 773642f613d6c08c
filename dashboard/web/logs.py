"""Log files: the list, a tail or a follow of one, and the raw download."""
from pathlib import Path

from flask import Blueprint, jsonify, request, send_file

from .. import logfiles
from ..service import APP_LOG
from . import dashboard, error, int_arg, parse_id

bp = Blueprint("logs", __name__)


def read_log(opened: logfiles.OpenedLog, logs_dir: Path = None) -> dict:
    """Tail (or, with ?after=, what follows an offset) of an opened log file,
    filtered as the request asks; the file is closed."""
    keep = logfiles.make_filter(request.args.get("filter"), request.args.get("level"))
    tail = int_arg("tail", 200, 1, logfiles.MAX_TAIL)
    after = request.args.get("after")
    with opened.file as f:
        if after not in (None, ""):
            offset = int_arg("after", 0, 0, 2**62)
            data = logfiles.read_after(f, offset, keep)
            if data["reset"]:
                data = logfiles.tail(f, tail, keep)
                data["reset"] = True
        else:
            data = logfiles.tail(f, tail, keep)
    data["lines"] = [{"text": logfiles.shorten_line(line), "level": logfiles.level_of(line)} for line in data["lines"]]
    data["path"] = opened.name
    return data


def open_request_file():
    """(the opened file the request names: ?run=ID or ?path=REL, None) or (None, an error response)."""
    svc = dashboard()
    run_arg = request.args.get("run")
    try:
        if run_arg:
            run_id = parse_id(run_arg)
            if run_id is None:
                return None, error(400, "run must be a run id (a number)")
            opened = svc.open_run_log(run_id)
            if opened is None:
                return None, error(404, f"run {run_id} has no log file")
            return opened, None
        return logfiles.open_log(svc.logs_dir, request.args.get("path") or APP_LOG), None
    except logfiles.UnsafePath as exc:
        svc.log.warning("refused log path %r from %s: %s", request.args.get("path", "")[:200],
                        request.remote_addr, exc)
        return None, error(403, f"refused: {exc}")
    except FileNotFoundError:
        return None, error(404, "no such log file")
    except OSError as exc:
        return None, error(403, f"the log file cannot be read: {exc.strerror or exc}")


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
    opened, error = open_request_file()
    if error is not None:
        return error
    return jsonify(**read_log(opened))


@bp.get("/logs/download")
def download():
    opened, error = open_request_file()
    if error is not None:
        return error
    # Raw bytes as a text/plain attachment, never rendered as a page; sent from
    # the file opened and checked above (the response closes it).
    return send_file(opened.file, mimetype="text/plain", as_attachment=True,
                     download_name=Path(opened.name).name, max_age=0, conditional=False)
