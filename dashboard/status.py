"""The words a run and a "Run all" sequence end with: their statuses and reasons.

Every status and every reason text the dashboard writes to the history, the
API and the logs is spelled here once, so that the runner, the sequence, the
service and the history cannot drift apart. A cancel is its own outcome, never
a failure: the user asked for it.
"""
from enum import Enum


class RunStatus(str, Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self is not RunStatus.RUNNING


class SequenceStatus(str, Enum):
    """A "Run all" ends as its first step that does not succeed ends."""
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


REASON_CANCELLED = "cancelled by the user"
REASON_INTERRUPTED = "interrupted: the server stopped while it ran"


def could_not_start(detail: str) -> str:
    return f"could not start: {detail}"


def log_not_opened(log_rel: str, detail: str) -> str:
    return could_not_start(f"cannot open its log file {log_rel}: {detail}")


def internal_error(exc: BaseException) -> str:
    return f"internal error: {exc}"


def all_steps_succeeded(count: int) -> str:
    return f"all {count} steps succeeded"


def sequence_stopped(step_name: str, status: RunStatus, reason: str | None) -> tuple[SequenceStatus, str]:
    """How a sequence ends when one of its steps ended with ``status``, not success."""
    if status is RunStatus.CANCELLED:
        return SequenceStatus.CANCELLED, f"stopped: {step_name} was cancelled"
    if status is RunStatus.INTERRUPTED:
        return SequenceStatus.INTERRUPTED, f"stopped: {step_name} was interrupted"
    return SequenceStatus.FAILED, f"stopped: {step_name} failed ({reason})"
