"""Progress lines: match a step's output against its patterns, keep the state.

The patterns come from the step's ``progress_patterns`` in config/workflow.json
(the contract is docs/progress-protocol.md). An item is identified by its index
``i``; its name comes from its PROCESSING_VIDEO line, because a file name may
itself contain the separators the other lines use.
"""
import re
from dataclasses import dataclass, field

# The keys a step may define, and the named groups each one must have.
PATTERN_GROUPS: dict[str, frozenset] = {
    "total": frozenset({"total"}),
    "item": frozenset({"item"}),
    "progress": frozenset({"done", "total"}),
    "success": frozenset(),
    "failure": frozenset(),
    "skipped": frozenset(),
    "summary": frozenset(),
}


class PatternError(ValueError):
    pass


def compile_patterns(patterns: dict) -> dict[str, re.Pattern]:
    """Compile and check a step's patterns; raise PatternError with one line."""
    if not isinstance(patterns, dict):
        raise PatternError("progress_patterns must be an object of key -> regex")
    compiled = {}
    for key, source in patterns.items():
        if key not in PATTERN_GROUPS:
            raise PatternError(f"progress_patterns.{key}: unknown key (known: {', '.join(PATTERN_GROUPS)})")
        if not isinstance(source, str):
            raise PatternError(f"progress_patterns.{key}: must be a string")
        try:
            rx = re.compile(source)
        except re.error as exc:
            raise PatternError(f"progress_patterns.{key}: bad regex: {exc}") from None
        missing = PATTERN_GROUPS[key] - set(rx.groupindex)
        if missing:
            raise PatternError(f"progress_patterns.{key}: needs the named group(s) {', '.join(sorted(missing))}")
        compiled[key] = rx
    return compiled


class LineMatcher:
    """Finds which pattern, if any, a line matches."""

    def __init__(self, compiled: dict[str, re.Pattern]):
        self._items = list(compiled.items())

    def match(self, line: str):
        for key, rx in self._items:
            m = rx.match(line)
            if m:
                return key, m.groupdict()
        return None


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass
class Outcome:
    index: int | None
    item: str | None
    detail: str | None


@dataclass
class ProgressState:
    """What the progress lines of one run have said so far."""

    total: int | None = None
    index: int | None = None
    item: str | None = None
    item_done: int | None = None
    item_total: int | None = None
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    scenes: int | None = None  # over every success line that gave a scene count
    summary: dict | None = None
    names: dict = field(default_factory=dict)
    partial: dict = field(default_factory=dict)  # index -> share of the item done
    frames: dict = field(default_factory=dict)   # index -> (done, total) of its last progress line
    finished: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    last_success: Outcome | None = None
    _fraction: float = 0.0
    _completed: bool = False

    MAX_FAILURES_KEPT = 20

    def apply(self, key: str, groups: dict) -> None:
        index = _int(groups.get("index"))
        if key == "total":
            self.total = _int(groups.get("total"))
        elif key == "item":
            self.index = index if index is not None else (self.index or 0) + 1
            self.item = groups.get("item")
            self.names[self.index] = self.item
            self.item_done = self.item_total = None
            total = _int(groups.get("total"))
            if total is not None:
                self.total = total
        elif key == "progress":
            if index is not None and index != self.index:
                self.index = index
                self.item = self.names.get(index)
            self.item_done = _int(groups.get("done"))
            self.item_total = _int(groups.get("total"))
            if self.index is not None:
                self.frames[self.index] = (self.item_done, self.item_total)
            if self.index is not None and self.item_total:
                self.partial[self.index] = min(1.0, max(0.0, (self.item_done or 0) / self.item_total))
        elif key in ("success", "failure", "skipped"):
            self._finish(key, index, groups)
        elif key == "summary":
            self.summary = {k: _int(v) for k, v in groups.items()}
            for name in ("succeeded", "failed", "skipped"):
                if self.summary.get(name) is not None:
                    setattr(self, name, self.summary[name])
            if self.summary.get("total") is not None:
                self.total = self.summary["total"]
        self._update_fraction()

    def _finish(self, key: str, index, groups: dict) -> None:
        # An item counts once, whatever the number of lines about it.
        if index is not None:
            if index in self.finished:
                return
            self.finished[index] = key
        else:
            self.finished[("line", len(self.finished))] = key
        name = self.names.get(index) or groups.get("item")
        if key == "success":
            self.succeeded += 1
            detail = groups.get("result")
            if groups.get("scenes") is not None:
                detail = f"{detail} ({groups['scenes']} scenes)" if detail else f"{groups['scenes']} scenes"
                self.scenes = (self.scenes or 0) + (_int(groups["scenes"]) or 0)
            self.last_success = Outcome(index, name, detail)
        elif key == "failure":
            self.failed += 1
            self.failures.append(Outcome(index, name, groups.get("cause")))
            del self.failures[: -self.MAX_FAILURES_KEPT]
        else:
            self.skipped += 1
        if index is not None and index == self.index:
            # The item shown is done: show one still in progress, if any.
            waiting = sorted(i for i in self._started() if i not in self.finished)
            if waiting:
                self.index = waiting[0]
                self.item = self.names.get(self.index)
                self.item_done, self.item_total = self.frames.get(self.index, (None, None))

    def _started(self) -> set:
        return {i for i in self.names if isinstance(i, int)} | set(self.partial)

    def _update_fraction(self) -> None:
        if not self.total:
            return
        done = len(self.finished)
        # A step may work on several items at once (STEP3 decodes several videos
        # in parallel): every unfinished item's share counts.
        partial = sum(share for index, share in self.partial.items() if index not in self.finished)
        # Never backwards: an estimated frame total that grows must not make the bar jump back.
        self._fraction = max(self._fraction, min(1.0, (done + partial) / self.total))

    @property
    def in_progress(self) -> int:
        """Items started and not finished (STEP3 works on several at once)."""
        return sum(1 for i in self._started() if i not in self.finished)

    @property
    def fraction(self) -> float | None:
        """0..1, or None while the step has not said how much work there is."""
        if self._completed:
            return 1.0
        if self.total is None:
            return None
        if self.total == 0:
            return 1.0 if self.summary is not None else 0.0
        return self._fraction

    def complete(self) -> None:
        """The run ended well: whatever the lines said, the work is done."""
        self._completed = True
