"""The JSON API: what the pages use, and what scripts may use (see the README)."""
import json
import time

from flask import Blueprint, jsonify, request, url_for

from .. import logfiles
from ..options import OptionError
from ..runner import Busy, LaunchError, NotReady, NotRunning, UnknownStep
from ..sequence import SequenceBusy
from ..status import RunStatus
from . import dashboard, error, int_arg
from .logs import read_log

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.get("/steps")
def steps():
    state = dashboard().snapshot()
    return jsonify(state)


@bp.get("/steps/<step_id>")
def step(step_id: str):
    state = dashboard().step_state(step_id)
    if state is None:
        return error(404, f"no step {step_id!r}")
    return jsonify(state)


@bp.get("/steps/<step_id>/options")
def step_options(step_id: str):
    step = dashboard().registry.get(step_id)
    if step is None:
        return error(404, f"no step {step_id!r}")
    return jsonify(step_id=step.id, options=[o.as_json() for o in step.options])


@bp.post("/steps/<step_id>/run")
def run_step(step_id: str):
    """Body (optional): {"options": {name: value}}; the options left out take their defaults."""
    try:
        options = _options_of_body()
    except _BadBody as exc:
        return error(exc.status, str(exc))
    return _launch(step_id, options)


@bp.post("/runs/<int:run_id>/again")
def run_again(run_id: int):
    """The run's step again, with the options it recorded (checked again: a video may have gone)."""
    row = dashboard().store.get(run_id)
    if row is None:
        return error(404, f"no run {run_id}")
    return _launch(row["step_id"], row.get("options"))


class _BadBody(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _options_of_body() -> dict | None:
    raw = request.get_data(cache=False)
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _BadBody(400, f"the request body is not JSON ({str(exc)[:120]}); send {{\"options\": {{...}}}} or nothing")
    if not isinstance(body, dict):
        raise _BadBody(422, "the request body must be a JSON object: {\"options\": {name: value}}")
    unknown = sorted(set(body) - {"options"})
    if unknown:
        raise _BadBody(422, f"unknown key {unknown[0]!r} in the request body (only \"options\")")
    options = body.get("options")
    if options is not None and not isinstance(options, dict):
        raise _BadBody(422, "options must be an object of option name -> value")
    return options


def _launch(step_id: str, options: dict | None):
    svc = dashboard()
    try:
        run = svc.runner.launch(step_id, trigger="user", options=options)
    except UnknownStep as exc:
        return error(404, str(exc))
    except OptionError as exc:
        return error(422, str(exc))
    except Busy as exc:
        return error(409, str(exc), run_id=exc.run_id)
    except NotReady as exc:
        return error(422, str(exc), problems=exc.problems, fix=exc.fix)
    except LaunchError as exc:
        return error(503, str(exc))
    response = jsonify(run_id=run.id, run=run.snapshot())
    response.status_code = 202
    response.headers["Location"] = url_for("api.run", run_id=run.id)
    return response


@bp.post("/steps/<step_id>/cancel")
def cancel_step(step_id: str):
    svc = dashboard()
    if svc.registry.get(step_id) is None:
        return error(404, f"no step {step_id!r}")
    try:
        run = svc.runner.cancel(step_id)
    except NotRunning as exc:
        return error(409, str(exc))
    svc.log.info("cancel of %s run %s requested from %s", step_id, run.id, request.remote_addr)
    response = jsonify(run_id=run.id, run=run.snapshot())
    response.status_code = 202
    return response


@bp.get("/runs")
def runs():
    step_id = request.args.get("step") or None
    status = request.args.get("status") or None
    if status and status not in {s.value for s in RunStatus}:
        return error(400, f"unknown status {status!r}")
    folder = request.args.get("folder") or None  # a projects folder, as the runs record it
    limit = int_arg("limit", 50, 1, 500)
    offset = int_arg("offset", 0, 0, 10**9)
    items, total = dashboard().runs(step_id, status, limit, offset, folder)
    return jsonify(runs=items, total=total, limit=limit, offset=offset)


@bp.get("/runs/<int:run_id>")
def run(run_id: int):
    state = dashboard().run_state(run_id)
    if state is None:
        return error(404, f"no run {run_id}")
    return jsonify(state)


@bp.get("/runs/<int:run_id>/log")
def run_log(run_id: int):
    svc = dashboard()
    if svc.store.get(run_id) is None:
        return error(404, f"no run {run_id}")
    try:
        opened = svc.open_run_log(run_id)
    except (logfiles.UnsafePath, OSError):
        opened = None
    if opened is None:
        return error(404, f"run {run_id} has no log file")
    return jsonify(run_id=run_id, **read_log(opened))


@bp.get("/run-all")
def run_all_state():
    return jsonify(dashboard().sequence_state())


@bp.post("/run-all")
def run_all():
    svc = dashboard()
    try:
        seq = svc.sequences.start()
    except SequenceBusy as exc:
        return error(409, str(exc))
    except NotReady as exc:
        return error(422, str(exc), problems=exc.problems, fix=exc.fix)
    except LaunchError as exc:
        return error(422, str(exc))
    response = jsonify(sequence=seq.snapshot())
    response.status_code = 202
    return response


@bp.post("/run-all/cancel")
def run_all_cancel():
    seq = dashboard().sequences.cancel()
    if seq is None:
        return error(409, "\"Run all\" is not running")
    response = jsonify(sequence=seq.snapshot())
    response.status_code = 202
    return response


@bp.get("/system")
def system():
    return jsonify(dashboard().system.sample())


@bp.get("/projects")
def projects():
    svc = dashboard()
    return jsonify(projects_dir=str(svc.projects_dir), **svc.videos())


@bp.get("/health")
def health():
    return jsonify(ok=True, time=time.time())
