"""STEP3's progress lines (stepkit's emitter, docs/progress-protocol.md), also
copied to the run's own log file."""
from datetime import datetime
from pathlib import Path

from stepkit.progress_lines import ProgressEmitter


class Reporter(ProgressEmitter):
    @classmethod
    def with_log(cls, log_dir: Path) -> "Reporter":
        """Lines to stdout and to a new ``transnet_<time>.log`` in ``log_dir``."""
        log_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
        path = log_dir / f"transnet_{stamp}.log"
        n = 1
        while path.exists():  # two runs within one second keep separate logs
            n += 1
            path = log_dir / f"transnet_{stamp}_{n}.log"
        return cls(log_file=open(path, "a", encoding="utf-8", buffering=1))
