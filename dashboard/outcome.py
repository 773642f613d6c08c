"""A run's result in words a user understands: what happened, and what to do.

"exit code 0" says nothing to someone who pressed Run; "Done: 1 video
analysed, 108 scenes" does. The sentence is made from what the run's lines
said (its counts, its scenes, its first ERROR: line) and how it ended; the
raw reason and return code stay in the run's JSON for the details.
"""
import signal
from dataclasses import dataclass

from .status import RunStatus

# What a signal that ended a step most likely means, for the user.
SIGNAL_HINTS = {
    "SIGKILL": ", often because the system ran out of memory",
    "SIGTERM": " from outside the dashboard",
    "SIGINT": " (an interrupt, as Ctrl-C sends)",
}


@dataclass(frozen=True)
class Facts:
    status: str
    cancelling: bool
    return_code: int | None
    reason: str | None
    total: int | None
    succeeded: int
    failed: int
    skipped: int
    scenes: int | None       # scenes found over every video that succeeded, if the step says
    error_line: str | None   # the step's first ERROR: line, without the prefix
    meaning: str | None      # the step's own words for its exit code (workflow.json's exit_codes)
    verb: str | None         # what the step does to a video ("analysed"), from workflow.json


def describe(f: Facts) -> str:
    if f.status == RunStatus.RUNNING.value:
        return "Cancelling: waiting for the step to stop" if f.cancelling else "Running"
    if f.status == RunStatus.CANCELLED.value:
        return f"Cancelled: you stopped it {_how_far(f)}"
    if f.status == RunStatus.INTERRUPTED.value:
        return f"Interrupted: the dashboard stopped while it ran, {_how_far(f)}; run it again to finish"
    if f.status == RunStatus.SUCCEEDED.value:
        return _done(f)
    return _failed(f)


def _done(f: Facts) -> str:
    if not (f.succeeded or f.failed or f.skipped):
        return "Done: there was no video to work on in the projects folder"
    if not f.succeeded and f.skipped and not f.failed:
        return f"Done: nothing new to do, {_videos(f.skipped)} skipped (their results are complete)"
    return f"Done: {_work(f)}"


def _failed(f: Facts) -> str:
    reason = f.reason or ""
    if reason.startswith("could not start:"):
        return f"Could not start: {reason.split(':', 1)[1].strip()}"
    if reason.startswith("internal error"):
        return "Failed: an error inside the dashboard ended the run; see app.log"
    name = _signal_name(f.return_code)
    if name:
        return f"Stopped: the step was ended by a signal ({name}){SIGNAL_HINTS.get(name, '')}; run it again to finish"
    if f.total is None and not (f.succeeded or f.failed or f.skipped):
        # Nothing was announced: the step stopped on its options or its folder.
        return f"Could not start: {f.error_line or _fallback(f)}"
    if f.failed:
        return f"Finished with failures: {f.failed} of {_videos(f.total or f.failed)} failed; {_work(f)}"
    cause = f.error_line or f.meaning or "the step ended with an error"
    return f"Failed {_how_far(f)}: {cause}; see its log"


def _work(f: Facts) -> str:
    """'3 videos analysed, 60 scenes, 1 skipped'."""
    verb = f.verb or ("analysed" if f.scenes is not None else "processed")
    parts = [f"{_videos(f.succeeded)} {verb}"]
    if f.scenes is not None:
        parts.append(f"{f.scenes} scene{'' if f.scenes == 1 else 's'}")
    if f.skipped:
        parts.append(f"{f.skipped} skipped")
    if f.failed and f.status == RunStatus.SUCCEEDED.value:
        parts.append(f"{f.failed} failed")
    return ", ".join(parts)


def _how_far(f: Facts) -> str:
    done = f.succeeded + f.failed + f.skipped
    if not done:
        return "before any video was done"
    return f"after {done} of {_videos(f.total)}" if f.total else f"after {_videos(done)}"


def _fallback(f: Facts) -> str:
    if f.meaning:
        return f"{f.meaning}; see its log"
    return "the step stopped before its first video; see its log"


def _videos(n: int | None) -> str:
    if n is None:
        return "the videos"
    return f"{n} video{'' if n == 1 else 's'}"


def _signal_name(code: int | None) -> str | None:
    """The signal that ended the step: -N from the kernel, or 128+N from a step
    (or a shell) that exits with the code a shell reports for it."""
    if code is None:
        return None
    number = -code if code < 0 else code - 128 if 128 < code < 128 + 65 else None
    if number is None:
        return None
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def sequence_outcome(status: str, count: int, stopped_at: str | None = None, step_outcome: str | None = None,
                     cause: str | None = None, later_steps: bool = True) -> str:
    """How a "Run all" ended, in words: ``stopped_at`` is the step it stopped at,
    ``step_outcome`` that step's run's own sentence (describe()), ``cause`` why it
    could not be started; the raw reason stays in the sequence's JSON."""
    after = " — the steps after it did not run" if later_steps else ""
    if status == RunStatus.SUCCEEDED.value:
        return "Done: the step succeeded" if count == 1 else f"Done: all {count} steps succeeded"
    if status == RunStatus.CANCELLED.value:
        return f"Cancelled: you stopped Run all{f' during {stopped_at}' if stopped_at else ''}{after}"
    if status == RunStatus.INTERRUPTED.value:
        during = f" while {stopped_at} ran" if stopped_at else ""
        return f"Interrupted: the dashboard stopped{during}; press Run all again to finish"
    if cause is not None:
        return f"Stopped: {cause}{after}"
    if stopped_at and step_outcome:
        return f"Stopped at {stopped_at}: {_lower_first(step_outcome)}{after}"
    return "Failed: an error inside the dashboard stopped Run all; see app.log"


def _lower_first(text: str) -> str:
    """A sentence of describe() inside another one ("Failed ..." -> "failed ...")."""
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text
