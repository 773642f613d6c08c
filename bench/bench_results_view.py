"""Results-view benchmark: a one-hour video (90,000 frames at 25 fps, 1,800 scenes).

    env/bin/python bench/bench_results_view.py [--work DIR] [--write]

The video is real: the sample looped with ``ffmpeg -stream_loop`` and cut to
90,000 frames (160x90, re-encoded once). Its result is synthetic but in the
format STEP3 writes (stepkit.scene_results): 1,800 scenes, a probability peak
at each cut, low noise elsewhere. Measured through a real server (werkzeug,
threaded) and headless Chromium:

1. GET /api/videos/<path>: answer size, time cold (the JSON parsed and checked)
   and warm; the video page's HTML; the page ready in Chromium (cut list drawn).
2. Thumbnails: the first screen (16 frames) through the API, on demand, cold;
   cache fill through the API from 8 client threads on 400 frames (the rate,
   and the whole cache, both sides of all 1,799 cuts = 3,598 frames, at that
   rate); and all 3,598 frames in one ffmpeg pass (``extract_many``, what the
   HTML report uses).
3. EDL and OTIO exports through the API.
4. The split step (re-encode and --copy) against plain ffmpeg: one ffmpeg
   re-encoding the whole video with the same settings and no cut (the floor),
   and one ffmpeg per scene with input seek (PySceneDetect's way) on 100 scenes.

--write appends (or replaces) the "## Results view" section of bench/RESULTS.md.
"""
import argparse
import json
import logging
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "workflow_scripts" / "split"))

from stepkit.scene_results import make_document, result_paths, scene_rows, video_identity, write_results  # noqa: E402

FRAMES, FPS, SCENES = 90_000, 25, 1_800
NAME = "hour.mp4"


def make_video(folder: Path) -> Path:
    video = folder / NAME
    if not video.exists():
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-stream_loop", "-1", "-i",
                        str(ROOT / "projects" / "demo" / "sample.mp4"), "-frames:v", str(FRAMES), "-map", "0:v:0",
                        "-map", "0:a:0?", "-c:v", "libx264", "-preset", "veryfast", "-g", "250", "-c:a", "aac",
                        "-shortest", str(video)], check=True)
    return video


def make_result(video: Path) -> list:
    rng = random.Random(14)
    cuts = sorted(rng.sample(range(10, FRAMES - 10), SCENES - 1))
    single = [round(rng.random() * 0.01, 6) for _ in range(FRAMES)]
    every = [round(rng.random() * 0.02, 6) for _ in range(FRAMES)]
    for cut in cuts:  # the transition frame: the scene before ends on it (the official rule)
        single[cut] = round(0.55 + rng.random() * 0.44, 6)
        every[cut] = 0.9
    starts = [0] + [c + 1 for c in cuts]
    scenes = [(a, b) for a, b in zip(starts, cuts + [FRAMES - 1])]
    rows = scene_rows(scenes, [i / FPS for i in range(FRAMES)], FPS)
    doc = make_document(
        video={"file": video.name, "identity": video_identity(video), "codec": "h264", "width": 160, "height": 90,
               "fps": float(FPS), "frame_rate": f"{FPS}/1", "duration_s": FRAMES / FPS, "frame_count": FRAMES,
               "decoded_span_s": FRAMES / FPS, "decode_errors": 0, "decoded_in_segments": 1},
        threshold=0.5, rows=rows, model={"name": "TransNetV2", "weights_file": "synthetic", "weights_sha256": "0" * 64},
        run={"device": "cpu", "precision": "fp32", "torchscript": False, "implementation": ["eager"]},
        timings={"started_at": "2026-12-03T00:00:00+00:00", "wall_s": 1.0, "inference_s": 1.0, "model_load_s": 1.0},
        single_frame=single, all_frames=every)
    write_results(result_paths(video, [video]), rows, doc)
    return [(a + 1, b + 1) for a, b in scenes]


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=600) as answer:
        return answer.read()


def page_ready_s(url: str) -> float:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get("about:blank")
        start = time.perf_counter()
        driver.get(url)
        WebDriverWait(driver, 120, poll_frequency=0.01).until(
            lambda d: d.execute_script("return document.querySelectorAll('#cuts li.cut').length") > 0)
        ready = time.perf_counter() - start
        WebDriverWait(driver, 120, poll_frequency=0.01).until(
            lambda d: d.execute_script("return document.querySelectorAll('#cuts li.cut').length") == SCENES - 1)
        listed = time.perf_counter() - start
        # The page's own marks (static/js/video.js), from the start of the navigation.
        marks = driver.execute_script(
            "return ['video-data', 'video-rendered'].map(n => performance.getEntriesByName(n)[0].startTime)")
        return ready, listed, marks[0] / 1000, marks[1] / 1000
    finally:
        driver.quit()


class Rows(list):
    """The table's rows, each printed as soon as it is measured."""

    def append(self, row):
        print(f"| {row[0]} | {row[1]} |", flush=True)
        super().append(row)

    def __iadd__(self, rows):
        for row in rows:
            self.append(row)
        return self


def measure(work: Path, part: str = "all") -> list:
    from werkzeug.serving import make_server

    from dashboard import create_app
    from dashboard.results.thumbnails import extract_many
    projects = work / "projects"
    projects.mkdir(parents=True, exist_ok=True)
    video, seconds = timed(make_video, projects)
    scenes = make_result(video)
    rows = Rows()
    rows.append(("one-hour video made (sample looped, 90,000 frames; 0 s when already there)", f"{seconds:.1f} s"))
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    if part.startswith("split"):
        modes = {"split": ("reencode", "copy"), "split-plain": (), "split-reencode": ("reencode",)}[part]
        rows.extend(split_rows(work, projects, video, scenes, modes))
        return rows
    (work / "wf.json").write_text(json.dumps({"venvs": {"env": {}}, "steps": []}))
    app = create_app({"ROOT": str(ROOT), "WORKFLOW_CONFIG": str(work / "wf.json"), "PROJECTS_DIR": str(projects),
                      "LOGS_DIR": str(work / "logs"), "DATABASE": str(work / "data" / "runs.sqlite3"),
                      "NVIDIA_SMI": ""})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        body, cold = timed(get, f"{base}/api/videos/{NAME}")
        _, warm = timed(get, f"{base}/api/videos/{NAME}")
        html, page = timed(get, f"{base}/videos/{NAME}")
        rows += [("GET /api/videos/<path>: answer size", f"{len(body) / 1024:.0f} KiB"),
                 ("... time, cold (result parsed and checked)", f"{cold * 1000:.0f} ms"),
                 ("... time, warm", f"{warm * 1000:.0f} ms"),
                 ("video page HTML", f"{len(html) / 1024:.1f} KiB, {page * 1000:.0f} ms"),
                 ]
        ready, listed, data_at, drawn_at = page_ready_s(base + "/videos/" + NAME)
        rows += [("video page in Chromium: the data in (page's own mark)", f"{data_at:.2f} s"),
                 ("... plot, stats and first 60 cuts drawn (page's own mark)", f"{drawn_at:.2f} s"),
                 ("... first cuts seen by the test driver", f"{ready:.2f} s"),
                 ("... all 1,799 cuts listed", f"{listed:.2f} s")]
        first = [f for a, b in zip(scenes, scenes[1:]) for f in (a[1], b[0])][:16]
        _, screen = timed(lambda: [get(f"{base}/api/videos/{NAME}/frame?n={n}&w=160") for n in first])
        every = sorted({f for a, b in zip(scenes, scenes[1:]) for f in (a[1], b[0])})
        sample = [n for n in every if n not in set(first)][:400]
        with ThreadPoolExecutor(8) as pool:
            _, fill = timed(lambda: list(pool.map(lambda n: get(f"{base}/api/videos/{NAME}/frame?n={n}&w=160"), sample)))
        out = work / "one-pass"
        out.mkdir(exist_ok=True)
        _, one_pass = timed(extract_many, video, every, 160, {n: out / f"{n}.jpg" for n in every})
        rows += [("first screen of thumbnails (16, on demand, cold, one after another)", f"{screen:.2f} s"),
                 ("thumbnail cache fill through the API (400 frames, 8 clients, pool of 2)",
                  f"{fill:.1f} s ({400 / fill:.1f} frames/s; all {len(every)} at that rate: "
                  f"{len(every) / (400 / fill) / 60:.0f} min)"),
                 (f"the same {len(every)} frames in one ffmpeg pass (extract_many)", f"{one_pass:.1f} s")]
        for fmt in ("edl", "otio"):
            data, seconds = timed(get, f"{base}/api/videos/{NAME}/export?format={fmt}")
            rows.append((f"export {fmt} ({len(data) / 1024:.0f} KiB)", f"{seconds * 1000:.0f} ms"))
    finally:
        server.shutdown()
    if part == "all":
        rows.extend(split_rows(work, projects, video, scenes))
    return rows


def split_rows(work: Path, projects: Path, video: Path, scenes, modes=("reencode", "copy")) -> list:
    script = ROOT / "workflow_scripts" / "split" / "split_shots.py"
    rows = Rows()
    runs = {"reencode": ("split step, re-encode (frame-accurate)", []), "copy": ("split step, --copy", ["--copy"])}
    for label, extra in (runs[m] for m in modes):
        out = work / ("shots" + "".join(extra))
        _, seconds = timed(lambda: subprocess.run([sys.executable, str(script), "--input-dir", str(projects),
                                                   "--output-dir", str(out), *extra], capture_output=True, check=True))
        rows.append((label, f"{seconds:.1f} s, {FRAMES / seconds:.0f} frames/s"))
    import cutter
    plain = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(video), "-map", "0:v:0", "-map", "0:a:0",
             *cutter.VIDEO_ARGS, *cutter.AUDIO_ARGS, str(work / "plain.mp4")]
    _, seconds = timed(lambda: subprocess.run(plain, check=True))
    rows.append(("plain ffmpeg, same encoder, whole video, no cut (the floor)",
                 f"{seconds:.1f} s, {FRAMES / seconds:.0f} frames/s"))
    some = scenes[:100]
    frames = sum(b - a + 1 for a, b in some)
    start = time.perf_counter()
    for i, (a, b) in enumerate(some):
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-ss", f"{(a - 1) / FPS:.6f}", "-i", str(video),
                        "-frames:v", str(b - a + 1), *cutter.VIDEO_ARGS, *cutter.AUDIO_ARGS,
                        str(work / f"per-scene-{i:04d}.mp4")], check=True)
    seconds = time.perf_counter() - start
    rows.append(("plain ffmpeg, one process per scene with input seek (100 scenes)",
                 f"{seconds:.1f} s, {frames / seconds:.0f} frames/s"))
    return rows


def table(rows) -> str:
    machine = f"{platform.node() or 'this machine'}: {os.cpu_count()} cores, {platform.processor() or platform.machine()}"
    lines = ["## Results view (issue 14)", "",
             f"`env/bin/python bench/bench_results_view.py --write`, {time.strftime('%Y-%m-%d')}, on {machine} "
             "(shared with other work: times are upper bounds).", "", "| what | measured |", "|---|---|"]
    return "\n".join(lines + [f"| {a} | {b} |" for a, b in rows]) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", help="working folder (default: a new temporary one)")
    parser.add_argument("--write", action="store_true", help="put the table in bench/RESULTS.md")
    parser.add_argument("--part", choices=("all", "page", "split", "split-plain", "split-reencode"), default="all",
                        help="page: the API, page, thumbnails and exports; split: the split step against ffmpeg; "
                             "split-plain: plain ffmpeg only")
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-results-"))
    text = table(measure(work, args.part))
    print(text)
    if args.write:
        path = ROOT / "bench" / "RESULTS.md"
        current = path.read_text()
        marker = "## Results view (issue 14)"
        if marker in current:
            head, rest = current.split(marker, 1)
            tail = rest[rest.find("\n## "):] if "\n## " in rest else ""
            current = head + text + tail
        else:
            current = current.rstrip("\n") + "\n\n" + text
        path.write_text(current)
    return 0


if __name__ == "__main__":
    sys.exit(main())
