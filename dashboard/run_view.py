"""The JSON of a run: one shape whether the run is live or read from the history.

A live run knows more than its history row (the item in progress, the
version that orders events, the estimate of the time left); a row gives those
fields their "nothing known" value instead of leaving them out, so a page or a
script never has to ask where a run came from. Both views go through
``_view``, whose parameters are the keys: neither can grow a key alone.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .options import summary
from .outcome import Facts, describe
from .status import RunStatus

if TYPE_CHECKING:
    from .registry import Step
    from .run import Run


def live_view(run: Run, now: float | None = None) -> dict:
    """A run the runner holds (running, or the latest of its step)."""
    now = time.time() if now is None else now
    with run.lock:
        p = run.progress
        elapsed = _elapsed(run.started_at, run.ended_at, now)
        cancelling = run.cancel_requested_at is not None and run.status is RunStatus.RUNNING
        # No time left to show while the run is being stopped: the work will not go on.
        eta = run.eta.estimate(time.monotonic()) if run.status is RunStatus.RUNNING and not cancelling else None
        return _view(
            run_id=run.id, version=run.version, step_id=run.step.id, step_name=run.step.name,
            status=run.status.value, cancelling=cancelling,
            trigger=run.trigger, sequence_id=run.sequence_id, started_at=run.started_at, ended_at=run.ended_at,
            elapsed=elapsed, eta_s=None if eta is None else round(eta, 1),
            return_code=run.return_code, reason=run.reason,
            total=p.total, index=p.index, item=p.item, item_done=p.item_done, item_total=p.item_total,
            in_progress=p.in_progress, fraction=p.fraction,
            succeeded=p.succeeded, failed=p.failed, skipped=p.skipped, scenes=p.scenes, error_line=run.error_line,
            step=run.step,
            last_success=None if p.last_success is None else vars(p.last_success),
            failures=[vars(f) for f in p.failures[-run.FAILURES_SHOWN:]],
            lines=run.lines, last_lines=list(run.last_lines), log=run.log_rel, projects_dir=run.projects_dir,
            options=run.options,
        )


def history_view(row: dict, step: Step | None, last_lines: list[str], now: float | None = None) -> dict:
    """A run from its history row: an older run, or one from before a restart.

    ``step`` is the step as configured now (the row keeps only its id), None
    if it is no longer in the workflow;
    ``last_lines`` are read from its log by whoever needs them (the step's card).
    """
    now = time.time() if now is None else now
    return _view(
        run_id=row["id"],
        version=None,  # from the history: final, newer than any live state
        step_id=row["step_id"], step_name=step.name if step else row["step_id"], status=row["status"],
        cancelling=False,
        trigger=row["trigger"], sequence_id=row["sequence_id"],
        started_at=row["started_at"], ended_at=row["ended_at"],
        elapsed=_elapsed(row["started_at"], row["ended_at"], now), eta_s=None,
        return_code=row["return_code"], reason=row["reason"],
        total=row["total"], index=None, item=row["current_item"], item_done=None, item_total=None,
        in_progress=0, fraction=row["fraction"],
        succeeded=row["succeeded"], failed=row["failed"], skipped=row["skipped"], scenes=row.get("scenes"),
        error_line=row.get("error_line"), step=step, last_success=row.get("last_success"), failures=row.get("failures") or [],
        lines=row["lines"], last_lines=last_lines, log=row["log_path"], projects_dir=row.get("projects_dir"),
        options=row.get("options"),
    )


def _elapsed(started_at: float, ended_at: float | None, now: float) -> float:
    end = ended_at if ended_at is not None else now
    return max(0.0, end - started_at)


def _view(*, run_id, version, step_id, step_name, status, cancelling, trigger, sequence_id, started_at, ended_at,
          elapsed, eta_s, return_code, reason, total, index, item, item_done, item_total, in_progress, fraction,
          succeeded, failed, skipped, scenes, error_line, step, last_success, failures, lines, last_lines, log,
          projects_dir, options) -> dict:
    facts = Facts(status=status, cancelling=cancelling, return_code=return_code, reason=reason, total=total,
                  succeeded=succeeded, failed=failed, skipped=skipped, scenes=scenes, error_line=error_line,
                  meaning=step.exit_meaning(return_code) if step and return_code is not None else None,
                  verb=step.done_verb if step else None)
    return {
        "id": run_id,
        "version": version,
        "step_id": step_id,
        "status": status,
        "cancelling": cancelling,
        "trigger": trigger,
        "sequence_id": sequence_id,
        "started_at": started_at,
        "ended_at": ended_at,
        "elapsed_s": round(elapsed, 3),
        "eta_s": eta_s,
        "return_code": return_code,
        "reason": reason,
        "total": total,
        "index": index,
        "item": item,
        "item_done": item_done,
        "item_total": item_total,
        "in_progress": in_progress,
        "fraction": fraction,
        "percent": None if fraction is None else round(100 * fraction, 1),
        "succeeded": succeeded,
        "failed": failed,
        "skipped": skipped,
        "last_success": last_success,
        "failures": failures,
        "lines": lines,
        "last_lines": last_lines,
        "log": log,
        "step_name": step_name,
        # None: a run from an older history file, which did not record its folder.
        "projects_dir": projects_dir,
        "scenes": scenes,
        "error_line": error_line,
        # Every option's value as the run recorded it (None: from an older history, run with
        # the step's defaults), and the ones that differ from today's defaults, in words.
        "options": options,
        "options_summary": summary(step.options if step else (), options),
        # The result in words (reason and return_code are the raw details).
        "outcome": describe(facts),
    }
