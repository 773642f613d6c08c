"""STEP3's script, run in this process with the mixed frame source's
hand-outs timed: which side (NVDEC or the ffmpeg decoders) took each task,
when, for how long. Used by ``bench_nvdec.py --trace`` to see where an
NVDEC run's time goes; the results are the script's own.

    python bench/nvdec_trace.py TRACE.json run_transnet.py's arguments...

``summarize(TRACE.json)`` returns the lines the benchmark prints. Knobs,
for experiments only: STEP3_TRACE_SWITCH (Python's GIL switch interval,
seconds), STEP3_TRACE_BATCH (NVDEC surfaces per batch), STEP3_TRACE_GRAPHS=1
(the conversion as CUDA graphs, nvdec_graph.py). A
sampler thread notes every 10 ms where the main, inference and NVDEC
threads are (their innermost frame in STEP3's code).
"""
import collections
import os
import threading
import json
import sys
import time
from pathlib import Path

import benchlib  # noqa: F401  (puts STEP3's folder on the path)


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


def sample_threads(counts: dict, stop: threading.Event, every: float = 0.01) -> None:
    """Where each kind of thread is, by its innermost frame in STEP3's code."""
    names = {}
    while not stop.wait(every):
        if len(names) != threading.active_count():
            names = {t.ident: t.name for t in threading.enumerate()}
        for ident, frame in sys._current_frames().items():
            name = names.get(ident, "?")
            kind = "nvdec" if name.startswith("nvdec") else "main" if name == "MainThread" else \
                "model" if "infer" in name or "model" in name else None
            if kind is None:
                continue
            top = frame
            while frame is not None and "/shots/" not in frame.f_code.co_filename:
                frame = frame.f_back
            where = frame or top
            key = f"{kind} {Path(where.f_code.co_filename).name}:{where.f_code.co_name}:{where.f_lineno}"
            if where is not top:
                key += f" <- {top.f_code.co_name}"
            counts[key] = counts.get(key, 0) + 1


def summarize(path: Path, big: int = 640 * 360) -> list:
    trace = json.loads(Path(path).read_text())
    events = [e for e in trace["events"] if "end" in e]
    if not events:
        return ["trace: no task"]
    end = max(e["end"] for e in events)
    totals = trace["nvdec"]
    out = ["trace NVDEC sessions' seconds: " + ", ".join(f"{k} {v:,.1f}" for k, v in sorted(totals.items())
                                                       if k != "frames") + f"; frames {totals.get('frames', 0):,.0f}"]
    samples = collections.Counter(trace.get("samples", {}))
    for kind, top in (("main", 12), ("model", 5), ("nvdec", 10)):
        mine = [(k, n) for k, n in samples.most_common() if k.startswith(kind + " ")][:top]
        total = sum(n for k, n in samples.items() if k.startswith(kind + " "))
        out += [f"trace samples {n / total:5.1%} {k}" for k, n in mine]
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
    events, totals, samples, t0 = [], {}, {}, time.perf_counter()
    install(events, t0, totals)
    if os.environ.get("STEP3_TRACE_SWITCH"):
        sys.setswitchinterval(float(os.environ["STEP3_TRACE_SWITCH"]))
    if os.environ.get("STEP3_TRACE_BATCH"):
        from shots.frames import nvdec_source, nvdec_task
        nvdec_task.BATCH_FRAMES = nvdec_source.BATCH_FRAMES = int(os.environ["STEP3_TRACE_BATCH"])
    if os.environ.get("STEP3_TRACE_GRAPHS") == "1":
        from shots.frames import nvdec_graph
        nvdec_graph.ENABLED = True
    stop = threading.Event()
    sampler = threading.Thread(target=sample_threads, args=(samples, stop), daemon=True)
    sampler.start()
    import run_transnet
    try:
        return run_transnet.main(argv)
    finally:
        stop.set()
        sampler.join()
        trace.write_text(json.dumps({"events": events, "nvdec": totals, "samples": samples}))


if __name__ == "__main__":
    sys.exit(main())
