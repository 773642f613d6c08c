"""Test step: prints the progress protocol for a few fake videos.

--items N, --frames F per item, --delay S between frame lines,
--fail I (item I fails), --exit CODE at the end, --names a.mp4,b.mov
"""
import argparse
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
args = parser.parse_args()

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
