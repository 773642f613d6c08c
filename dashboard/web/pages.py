"""The HTML pages. They render the same state the API serves; their scripts keep it live."""
import math
from datetime import datetime

from flask import Blueprint, Flask, current_app, render_template, request

from .. import logfiles
from ..status import RunStatus
from . import dashboard, int_arg, log_choice
from .logs import read_log

bp = Blueprint("pages", __name__)
PAGE_SIZE = 50
# A Cancel on a run older than this asks first; a run longer than this changes the
# page title (and notifies, if allowed) when it ends. Tests shorten them (app config).
CONFIRM_AFTER_S = 60
NOTIFY_AFTER_S = 60


@bp.get("/")
def index():
    svc = dashboard()
    config = current_app.config
    return render_template("dashboard.html", state=svc.snapshot(), videos=svc.videos(),
                           projects_dir=str(svc.projects_dir),
                           step_options={s.id: [o.as_json() for o in s.options] for s in svc.registry.steps},
                           confirm_after_s=config.get("CANCEL_CONFIRM_AFTER_S", CONFIRM_AFTER_S),
                           notify_after_s=config.get("NOTIFY_AFTER_S", NOTIFY_AFTER_S))


@bp.get("/history")
def history():
    svc = dashboard()
    step_id = request.args.get("step") or None
    status = request.args.get("status") or None
    if status not in {s.value for s in RunStatus}:
        status = None
    page = int_arg("page", 1, 1, 10**9)
    folder = request.args.get("folder") or None
    runs, total = svc.runs(step_id, status, PAGE_SIZE, (page - 1) * PAGE_SIZE, folder)
    names = {s.id: s.name for s in svc.registry.steps}
    folders = svc.store.folders()
    current = str(svc.projects_dir)
    if current not in folders:
        folders.insert(0, current)
    return render_template("history.html", runs=runs, total=total, page=page,
                           pages=max(1, math.ceil(total / PAGE_SIZE)), step_id=step_id, status=status,
                           steps=svc.registry.steps, names=names, statuses=[s.value for s in RunStatus],
                           folder=folder, folders=folders, current_folder=current)


@bp.get("/logs")
def logs():
    """?run=ID (a run's log), ?path=REL (any file in logs/), ?step=ID (its latest run), else app.log."""
    svc = dashboard()
    args = request.args
    choice = log_choice.choose(svc, args.get("step", ""), args.get("run", ""), args.get("path", ""))
    text_filter, level = args.get("filter", ""), args.get("level", "all")
    data = empty = None
    if choice.file is not None:
        try:
            data = read_log(choice.file, svc.logs_dir)
        except OSError as exc:
            choice.error = f"The file cannot be read: {exc.strerror or exc}."
        else:
            if not data["lines"]:
                empty = log_choice.empty_text(text_filter, level, data["complete"])
    step_id = choice.step_id
    real_step = step_id not in ("", log_choice.FILES, log_choice.UNKNOWN)
    runs = svc.runs(step_id, None, 100, 0)[0] if real_step else []
    files = logfiles.list_files(svc.logs_dir) if step_id == log_choice.FILES else []
    return render_template(
        "logs.html", steps=svc.registry.steps, runs=runs, files=files, choice=choice, step_id=step_id,
        run_id=choice.run_id, path=choice.path, data=data, empty=empty, error=choice.error,
        notice=choice.notice, source=choice.source, files_value=log_choice.FILES,
        unknown_value=log_choice.UNKNOWN, tail=args.get("tail", "200"), text_filter=text_filter, level=level,
    )


def register_filters(app: Flask) -> None:
    app.add_template_filter(_when, "when")
    app.add_template_filter(_duration, "duration")
    app.add_template_filter(_size, "size")
    app.add_template_filter(_sentence, "sentence")
    app.add_template_filter(_raw_result, "raw_result")


def _raw_result(run: dict) -> str:
    """The raw end of a run, under its sentence: the reason, and the return code
    where the reason does not already give it (as static/js/dashboard.js writes it)."""
    reason = run.get("reason") or ""
    code = run.get("return_code")
    if code is not None and "exit code" not in reason:
        reason = f"{reason} · return code {code}" if reason else f"return code {code}"
    return reason


def _sentence(text: str) -> str:
    """A message as a sentence: its first letter upper case (the rest, paths included, as it is)."""
    text = text.strip()
    if not text:
        return text
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def _when(epoch) -> str:
    if epoch is None:
        return "—"
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds) -> str:
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _size(n) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)

