"""Helpers shared by the dashboard's tests (not fixtures: those are in conftest.py)."""
import json
import time
from pathlib import Path

from stepkit.progress_lines import resolve_patterns

ROOT = Path(__file__).resolve().parents[2]
STEPS_DIR = "tests/dashboard/steps"
WORKFLOW = ROOT / "config" / "workflow.json"


def protocol_patterns() -> dict:
    """STEP3's patterns, the real contract, reused by the test steps (a standard
    set's name resolved by the registry's rule)."""
    data = json.loads(WORKFLOW.read_text())
    return resolve_patterns(next(s for s in data["steps"] if s["id"] == "step3")["progress_patterns"])


def step(step_id: str, script: str, *args: str, **extra) -> dict:
    entry = {
        "id": step_id,
        "name": extra.pop("name", f"Test {step_id}"),
        "description": extra.pop("description", f"test step {script}"),
        "script": f"{STEPS_DIR}/{script}",
        "venv": "env",
        "args": list(args),
        "progress_patterns": protocol_patterns(),
        "cancel_grace_s": 1,
    }
    entry.update(extra)
    return entry


def write_workflow(path: Path, steps: list[dict], venvs: dict | None = None) -> Path:
    path.write_text(json.dumps({"venvs": venvs or {"env": {"setup": "make setup"}}, "steps": steps}, indent=2))
    return path


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def finish(run, timeout=20):
    """The snapshot of a run once it has ended."""
    assert run.done.wait(timeout), f"run {run.id} did not end within {timeout} s"
    return run.snapshot()


def log_text(runner, run) -> str:
    return (runner.logs_dir / run.log_rel).read_text(encoding="utf-8")


def sample_lines() -> list[str]:
    """The reference sample block of docs/progress-protocol.md."""
    text = (ROOT / "docs" / "progress-protocol.md").read_text()
    block = text.split("<!-- sample-lines:start -->", 1)[1].split("<!-- sample-lines:end -->", 1)[0]
    body = block.split("```", 2)[1]
    return [line for line in body.strip("\n").split("\n") if line]


# What each line of docs/progress-protocol.md's sample must give: (pattern key, fields).
SAMPLE_FIELDS = {
    "TOTAL_VIDEOS_TO_PROCESS: 3": ("total", {"total": "3"}),
    "PROCESSING_VIDEO: 1/3: demo/sample.mp4": ("item", {"index": "1", "total": "3", "item": "demo/sample.mp4"}),
    "FRAMES: 1/3: 2650/5301": ("progress", {"index": "1", "done": "2650", "total": "5301"}),
    "SUCCESS: 1/3: demo/sample.mp4 -> demo/sample.csv (108 scenes)": (
        "success", {"index": "1", "item": "demo/sample.mp4", "result": "demo/sample.csv", "scenes": "108"}),
    "FAILED: 2/3: demo/broken clip.mp4: cannot read video: Invalid data found when processing input": (
        "failure", {"index": "2", "item": "demo/broken clip.mp4",
                    "cause": "cannot read video: Invalid data found when processing input"}),
    "SKIPPED: 3/3: demo/old.mov: results complete (use --force to redo)": (
        "skipped", {"index": "3", "item": "demo/old.mov"}),
    "SUMMARY: 1/3 succeeded, 1 failed, 1 skipped": (
        "summary", {"succeeded": "1", "total": "3", "failed": "1", "skipped": "1"}),
}
