"""Test step: prints the progress protocol for a few fake videos.

--items N, --frames F per item, --delay S between frame lines,
--fail I (item I fails), --exit CODE at the end, --names a.mp4,b.mov,
--start-delay S before the first line (as a model that loads), --preamble
(a long CONFIG_EFFECTIVE line and a DEVICE line first, as STEP3 prints),
--ignore-term (SIGTERM is ignored: a cancel waits for its SIGKILL)
"""
import argparse
import json
import signal
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--items", type=int, default=3)
parser.add_argument("--frames", type=int, default=4)
parser.add_argument("--delay", type=float, default=0.0)
parser.add_argument("--fail", type=int, default=0)
parser.add_argument("--exit", type=int, default=None)
parser.add_argument("--names", default="")
parser.add_argument("--input-dir", default="")
parser.add_argument("--start-delay", type=float, default=0.0)
parser.add_argument("--preamble", action="store_true")
parser.add_argument("--ignore-term", action="store_true")
args = parser.parse_args()
if args.ignore_term:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if args.preamble:
    config = {"input_dir": "/somewhere/projects", "extensions": [".mp4", ".mov", ".avi", ".mkv"], "threshold": 0.5}
    config.update({f"option_{i:02d}": f"value {i}, with a comma" for i in range(20)})
    print(f"CONFIG_EFFECTIVE: {json.dumps(config)}")
    print("DEVICE: cpu (test)")
time.sleep(args.start_delay)

names = [n for n in args.names.split(",") if n] or [f"demo/video {i}.mp4" for i in range(1, args.items + 1)]
total = len(names)
print(f"TOTAL_VIDEOS_TO_PROCESS: {total}")
ok = failed = 0
for i, name in enumerate(names, 1):
    print(f"PROCESSING_VIDEO: {i}/{total}: {name}")
    for done in range(1, args.frames + 1):
        time.sleep(args.delay)
        print(f"FRAMES: {i}/{total}: {done * 100}/{args.frames * 100}")
    if i == args.fail:
        print(f"FAILED: {i}/{total}: {name}: cannot read video: test failure")
        failed += 1
    else:
        print(f"SUCCESS: {i}/{total}: {name} -> {name.rsplit('.', 1)[0]}.csv ({i * 10} scenes)")
        ok += 1
print(f"SUMMARY: {ok}/{total} succeeded, {failed} failed, 0 skipped")
sys.exit(args.exit if args.exit is not None else (1 if failed else 0))
