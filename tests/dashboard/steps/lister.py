"""Test step: goes through the videos of --input-dir as a real step would,
echoing their names in every kind of line; names holding "<img" fail."""
import argparse
import os
import time

parser = argparse.ArgumentParser()
parser.add_argument("--input-dir", required=True)
parser.add_argument("--delay", type=float, default=0.0)
args = parser.parse_args()

names = sorted(
    os.path.relpath(os.path.join(d, f), args.input_dir)
    for d, _, files in os.walk(args.input_dir) for f in files if f.lower().endswith(".mp4")
)
print(f"TOTAL_VIDEOS_TO_PROCESS: {len(names)}")
failed = 0
for i, name in enumerate(names, 1):
    print(f"PROCESSING_VIDEO: {i}/{len(names)}: {name}")
    print(f"WARNING: {name}: looked at it")
    time.sleep(args.delay)
    if "<img" in name:
        failed += 1
        print(f"FAILED: {i}/{len(names)}: {name}: cannot read video: <b>not bold</b>")
    else:
        print(f"SUCCESS: {i}/{len(names)}: {name} -> {name[:-4]}.csv (1 scenes)")
print(f"SUMMARY: {len(names) - failed}/{len(names)} succeeded, {failed} failed, 0 skipped")
