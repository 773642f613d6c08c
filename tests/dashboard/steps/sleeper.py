"""Test step: a long run that keeps reporting progress until it is stopped."""
import sys
import time

items = int(sys.argv[1]) if len(sys.argv) > 1 else 1
print(f"TOTAL_VIDEOS_TO_PROCESS: {items}", flush=True)
for i in range(1, items + 1):
    print(f"PROCESSING_VIDEO: {i}/{items}: long/video {i}.mp4", flush=True)
    for done in range(1, 100_000):
        print(f"FRAMES: {i}/{items}: {done}/100000", flush=True)
        time.sleep(0.2)
