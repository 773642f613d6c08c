"""Dashboard benchmark: how fast the runner absorbs output, how soon the page hears of it.

    env/bin/python bench/bench_dashboard.py [--write]

1. Throughput: a child prints lines as fast as it can; lines per second the
   runner reads, parses, logs and publishes (goal >= 50k/s). Then the same child
   paced at 50k and 100k lines/s: its longest single write shows whether it ever
   waited on a full pipe (a blocked child waits in write()).
2. Latency: a child prints a progress line at a fixed rate, each naming the time
   it was printed; a client on the SSE stream of a real app.py process notes
   when the page state first reflects each line (goal p95 <= 250 ms). Also
   measured while another step floods its output.
3. A 1 GiB log: time to open its tail through the API and the log viewer page.

--write replaces the "## Dashboard" section of bench/RESULTS.md with the results.
"""
import argparse
import http.client
import json
import logging
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dashboard.bus import EventBus  # noqa: E402
from dashboard.history import RunStore  # noqa: E402
from dashboard.registry import load_registry  # noqa: E402
from dashboard.runner import Runner  # noqa: E402

STEPS = "tests/dashboard/steps"
PATTERNS = next(s for s in json.loads((ROOT / "config/workflow.json").read_text())["steps"]
                if s["id"] == "step3")["progress_patterns"]


def step(step_id, script, *args):
    return {"id": step_id, "name": step_id, "script": f"{STEPS}/{script}", "venv": "env", "args": list(args),
            "progress_patterns": PATTERNS}


def write_workflow(path: Path, steps) -> Path:
    path.write_text(json.dumps({"venvs": {"env": {}}, "steps": steps}))
    return path


def percentile(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


# ---- 1. throughput -----------------------------------------------------------

def throughput(tmp: Path, lines: int) -> dict:
    wf = write_workflow(tmp / "wf.json", [
        step("flood", "flood.py", str(lines)),
        step("paced50", "flood.py", str(lines // 4), "--rate", "50000"),
        step("paced100", "flood.py", str(lines // 2), "--rate", "100000"),
    ])
    store = RunStore(tmp / "runs.sqlite3")
    runner = Runner(load_registry(wf, ROOT), store, tmp / "logs", tmp, EventBus(), logging.getLogger("bench"))
    results = {}
    try:
        for step_id in ("flood", "paced50", "paced100"):
            start = time.perf_counter()
            run = runner.launch(step_id)
            run.done.wait()
            wall = time.perf_counter() - start
            snap = run.snapshot()
            done = next(x for x in snap["last_lines"] if x.startswith("FLOOD_DONE"))
            fields = dict(kv.split("=") for kv in done.split()[1:])
            results[step_id] = {
                "lines": int(fields["lines"]),
                "absorbed": snap["lines"],
                "wall_s": wall,
                "lines_per_s": snap["lines"] / wall,
                "child_s": float(fields["seconds"]),
                "max_write_ms": float(fields["max_write_ms"]),
                "max_pending": run.max_pending,
                "pipe_size": run.pipe_size,
            }
    finally:
        runner.shutdown()
        store.close()
    # The same child writing to /dev/null: how fast it is when nothing reads.
    out = subprocess.run([sys.executable, str(ROOT / STEPS / "flood.py"), str(lines)], stdout=subprocess.PIPE, text=True)
    fields = dict(kv.split("=") for kv in out.stdout.strip().splitlines()[-1].split()[1:])
    results["unread_child_s"] = float(fields["seconds"])
    return results


# ---- 2. latency ----------------------------------------------------------------

class AppServer:
    def __init__(self, tmp: Path, workflow: Path):
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--port", "0", "--config", str(workflow), "--logs-dir", str(tmp / "logs"),
             "--database", str(tmp / "runs.sqlite3"), "--projects-dir", str(tmp)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        self.port = int(re.search(r":(\d+)/", line).group(1))

    def post(self, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("POST", path)
        response = conn.getresponse()
        body = json.loads(response.read())
        conn.close()
        return body

    def get(self, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        start = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - start
        conn.close()
        return response.status, body, elapsed

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


def sse_events(port: int, stop: threading.Event, sink: list):
    """Read the event stream; record (arrival time, event name, data) for every event."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
    sock.settimeout(0.2)
    buffer = b""
    while not stop.is_set():
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        if not data:
            break
        now = time.time()
        buffer += data
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            name = payload = None
            for line in block.split(b"\n"):
                if line.startswith(b"event: "):
                    name = line[7:].decode()
                elif line.startswith(b"data: "):
                    payload = line[6:]
            if name and payload:
                sink.append((now, name, payload))
    sock.close()


def latency(tmp: Path, count: int, rate: float, with_flood: bool) -> dict:
    wf = write_workflow(tmp / "wf.json", [step("ticker", "ticker.py", str(count), str(rate)),
                                          step("flood", "flood.py", "3000000", "--rate", "100000")])
    server = AppServer(tmp, wf)
    stop = threading.Event()
    events: list = []
    reader = threading.Thread(target=sse_events, args=(server.port, stop, events), daemon=True)
    reader.start()
    try:
        time.sleep(0.5)
        if with_flood:
            server.post("/api/steps/flood/run")
            time.sleep(0.5)
        run_id = server.post("/api/steps/ticker/run")["run_id"]
        deadline = time.time() + count / rate + 30
        while time.time() < deadline:
            status = json.loads(server.get(f"/api/runs/{run_id}")[1])["status"]
            if status != "running":
                break
            time.sleep(0.2)
        time.sleep(0.3)
        if with_flood:
            server.post("/api/steps/flood/cancel")
        log = json.loads(server.get(f"/api/runs/{run_id}/log?tail=10000")[1])["lines"]
    finally:
        stop.set()
        reader.join(5)
        server.stop()
    printed = {}
    for line in log:
        m = re.match(r"PROCESSING_VIDEO: (\d+)/\d+: tick ([\d.]+)$", line["text"])
        if m:
            printed[int(m.group(1))] = float(m.group(2))
    # For each printed line: the first event whose state shows it (or a later line).
    seen = []  # (arrival, index shown)
    for arrival, name, payload in events:
        if name != "step":
            continue
        data = json.loads(payload)
        run = data.get("run") or {}
        if data["id"] == "ticker" and run.get("id") == run_id and run.get("index"):
            seen.append((arrival, run["index"]))
    delays = []
    for index, printed_at in printed.items():
        arrival = next((a for a, shown in seen if shown >= index), None)
        if arrival is not None:
            delays.append((arrival - printed_at) * 1000)
    return {
        "lines": len(printed), "measured": len(delays), "events": len(seen),
        "p50_ms": percentile(delays, 50), "p95_ms": percentile(delays, 95), "max_ms": max(delays),
        "mean_ms": statistics.fmean(delays),
    }


# ---- 3. a 1 GiB log ----------------------------------------------------------------

def big_log(tmp: Path) -> dict:
    logs = tmp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / "big.log"
    line = b"FRAMES: 1/1: 1234/5301 some more text to make a typical log line longer\n"
    block = line * (8 * 1024 * 1024 // len(line))
    with open(path, "wb") as f:
        while f.tell() < 1 << 30:
            f.write(block)
        f.write(b"SUCCESS: 1/1: demo/sample.mp4 -> demo/sample.csv (108 scenes)\n")
    size = path.stat().st_size
    wf = write_workflow(tmp / "wf.json", [step("ticker", "ticker.py")])
    server = AppServer(tmp, wf)
    try:
        subprocess.run(["sync"], check=False)
        status, body, api_s = server.get("/api/logs/file?path=big.log&tail=200")
        assert status == 200 and json.loads(body)["lines"][-1]["text"].startswith("SUCCESS"), body[:200]
        status, body, page_s = server.get("/logs?path=big.log&tail=1000")
        assert status == 200 and b"SUCCESS: 1/1" in body
        status, body, filtered_s = server.get("/api/logs/file?path=big.log&tail=50&filter=no-such-text")
        assert status == 200
        complete = json.loads(body)["complete"]
    finally:
        server.stop()
        path.unlink()
    return {"size": size, "api_ms": api_s * 1000, "page_ms": page_s * 1000, "filtered_ms": filtered_s * 1000,
            "filtered_complete": complete}


# ---- report --------------------------------------------------------------------

def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}; load average at start {load}")


def report(env: str, tp: dict, lat: dict, big: dict) -> str:
    f = tp["flood"]
    rows = [
        "## Dashboard",
        "",
        "`env/bin/python bench/bench_dashboard.py --write` (runs in about a minute).",
        "",
        f"Machine: {env}.",
        "",
        "### Runner throughput (goal: at least 50k lines/s, the child never blocked)",
        "",
        "| child | lines | absorbed | wall | lines/s | most bytes waiting in the pipe | child's longest write |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, label in (("flood", "as fast as it can"), ("paced50", "paced at 50k lines/s"),
                       ("paced100", "paced at 100k lines/s")):
        r = tp[key]
        rows.append(f"| {label} | {r['lines']:,} | {r['absorbed'] - 1:,} | {r['wall_s']:.2f} s | **{r['lines_per_s']:,.0f}** "
                    f"| {r['max_pending'] / 1024:,.0f} KiB of {r['pipe_size'] / 1024:,.0f} KiB | {r['max_write_ms']:.1f} ms |")
    rows += [
        "",
        f"Each line is split, stripped of ANSI escapes, matched against STEP3's seven patterns, written to the run's log "
        f"and published. The runner enlarges the pipe to 1 MiB; a read returns everything waiting, so the largest read "
        f"is the fullest the pipe ever was. Where that stays well below the pipe's size (by more than one write of "
        f"the child's, 8 KiB), the child never found the pipe full and never waited on the reader; an unpaced child "
        f"that comes close may have waited, and its rate is the most the runner absorbs. The unpaced child, read by a bare `subprocess.run` instead, takes {tp['unread_child_s']:.2f} s for "
        f"the same {f['lines']:,} lines; through the runner it took {f['child_s']:.2f} s (Python prints about 3-5 M "
        "lines/s, faster than any real step). The child's longest single write includes the scheduler's pauses on "
        "this 2-core machine.",
        "",
        "### Printed line to SSE event (goal: p95 at most 250 ms)",
        "",
        "A client on `/api/events` of a real `app.py` process; for each printed line, the delay until an event "
        "shows that line (or a later one: bursts are merged into the latest state).",
        "",
        "| scenario | lines | p50 | p95 | max |",
        "|---|---|---|---|---|",
    ]
    for label, r in lat:
        rows.append(f"| {label} | {r['measured']} | {r['p50_ms']:.1f} ms | **{r['p95_ms']:.1f} ms** | {r['max_ms']:.1f} ms |")
    rows += [
        "",
        "### A 1 GiB log",
        "",
        f"A {big['size'] / 2**30:.2f} GiB run log, read from its end: the API's tail of 200 lines answered in "
        f"**{big['api_ms']:.0f} ms**, the log viewer page with 1000 lines in {big['page_ms']:.0f} ms, and a filter that "
        f"matches nothing in {big['filtered_ms']:.0f} ms (it stops after 32 MiB and says so: complete={str(big['filtered_complete']).lower()}).",
        "",
    ]
    return "\n".join(rows)


def write_section(text: str) -> None:
    path = ROOT / "bench" / "RESULTS.md"
    old = path.read_text() if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile(r"^## Dashboard\n.*?(?=^## (?!#)|\Z)", re.S | re.M)
    if pattern.search(old):
        new = pattern.sub(lambda _: text + "\n", old, count=1)
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(new)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update the Dashboard section of bench/RESULTS.md")
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args()
    env = machine()
    print(env, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        tmp = Path(tmp)
        (tmp / "tp").mkdir()
        tp = throughput(tmp / "tp", args.lines)
        print(json.dumps(tp, indent=1), flush=True)
        lat = []
        for label, count, rate, flood in (("10 lines/s (a STEP3-like pace)", 100, 10, False),
                                          ("50 lines/s", 400, 50, False),
                                          ("50 lines/s, another step flooding 100k lines/s", 400, 50, True)):
            d = tmp / f"lat{len(lat)}"
            d.mkdir()
            r = latency(d, count, rate, flood)
            print(label, json.dumps(r), flush=True)
            lat.append((label, r))
        (tmp / "big").mkdir()
        big = big_log(tmp / "big")
        print(json.dumps(big), flush=True)
    text = report(env, tp, lat, big)
    print(text)
    if args.write:
        write_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
