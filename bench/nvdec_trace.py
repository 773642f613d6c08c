"""STEP3's script, run in this process with the mixed frame source's
hand-outs timed: which side (NVDEC or the ffmpeg decoders) took each task,
when, for how long. Used by ``bench_nvdec.py --trace`` to see where an
NVDEC run's time goes; the results are the script's own.

    python bench/nvdec_trace.py TRACE.json run_transnet.py's arguments...

``summarize(TRACE.json)`` returns the lines the benchmark prints.
"""
import json
import sys
import time
from pathlib import Path

from benchlib import STEP3  # noqa: F401  (puts STEP3 on the path)


def install(events: list, t0: float, totals: dict) -> None:
    from shots.frames import mixed_source
    from shots.frames.messages import TaskDone, TaskFailed
    cls = mixed_source.MixedFrameSource
    submit, poll, close = cls.submit, cls.poll, cls.close
    open_tasks = {}

    def timed_submit(self, task):
        submit(self, task)
        side = "nvdec" if self._owner.get(task.task_id) is self.nvdec else "cpu"
        event = {"video": task.info.path.name, "pixels": task.info.width * task.info.height, "side": side,
                 "first": task.segment.first, "start": time.perf_counter() - t0}
        open_tasks[task.task_id] = event
        events.append(event)

    def timed_poll(self, timeout):
        out = poll(self, timeout)
        for message in out:
            event = open_tasks.pop(getattr(message, "task_id", None), None) \
                if isinstance(message, (TaskDone, TaskFailed)) else None
            if event is not None:
                event["end"] = time.perf_counter() - t0
                event["frames"] = message.report.frame_count if isinstance(message, TaskDone) else 0
                event["failed"] = isinstance(message, TaskFailed)
        return out

    def closing(self):
        totals.update(self.nvdec.totals())
        close(self)

    cls.submit, cls.poll, cls.close = timed_submit, timed_poll, closing


def summarize(path: Path, big: int = 640 * 360) -> list:
    trace = json.loads(Path(path).read_text())
    events = [e for e in trace["events"] if "end" in e]
    if not events:
        return ["trace: no task"]
    end = max(e["end"] for e in events)
    totals = trace["nvdec"]
    out = ["trace NVDEC sessions' seconds: " + ", ".join(f"{k} {v:,.1f}" for k, v in sorted(totals.items()))]
    for side in ("nvdec", "cpu"):
        mine = [e for e in events if e["side"] == side]
        if not mine:
            continue
        frames = sum(e["frames"] for e in mine)
        busy = sum(e["end"] - e["start"] for e in mine)
        large = [e for e in mine if e["pixels"] >= big]
        out.append(f"trace {side}: {len(mine)} tasks, {frames} frames, {busy:.0f} task-s "
                   f"({frames / busy if busy else 0:,.0f} frames per task-s), last ended {max(e['end'] for e in mine):.1f} s"
                   f"; large pictures {len(large)} tasks, {sum(e['frames'] for e in large)} frames, "
                   f"{sum(e['end'] - e['start'] for e in large):.0f} task-s"
                   f", failed {sum(e['failed'] for e in mine)}")
    bins = [[0.0, 0.0, 0.0, 0.0] for _ in range(int(end // 5) + 1)]
    for e in events:  # frames spread evenly over each task's time, per 5 s; tasks running
        length = max(e["end"] - e["start"], 1e-6)
        for i in range(int(e["start"] // 5), int(e["end"] // 5) + 1):
            overlap = max(0.0, min(e["end"], 5 * i + 5) - max(e["start"], 5 * i))
            bins[i][e["side"] == "cpu"] += e["frames"] * overlap / length
            bins[i][2 + (e["side"] == "cpu")] += overlap
    out.append("trace per 5 s, frames/s nvdec+cpu (tasks running nvdec/cpu): " +
               " ".join(f"{n / 5:.0f}+{c / 5:.0f}({tn / 5:.1f}/{tc / 5:.1f})" for n, c, tn, tc in bins))
    return out


def main() -> int:
    trace, argv = Path(sys.argv[1]), sys.argv[2:]
    events, totals, t0 = [], {}, time.perf_counter()
    install(events, t0, totals)
    import run_transnet
    try:
        return run_transnet.main(argv)
    finally:
        trace.write_text(json.dumps({"events": events, "nvdec": totals}))


if __name__ == "__main__":
    sys.exit(main())
