"""Test step for the latency benchmark: N progress lines at a fixed rate, each
naming the wall-clock time it was printed, so a client can measure the delay."""
import sys
import time

count = int(sys.argv[1]) if len(sys.argv) > 1 else 100
rate = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
print(f"TOTAL_VIDEOS_TO_PROCESS: {count}", flush=True)
start = time.monotonic()
for i in range(1, count + 1):
    delay = start + i / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    print(f"PROCESSING_VIDEO: {i}/{count}: tick {time.time():.6f}", flush=True)
print(f"SUMMARY: {count}/{count} succeeded, 0 failed, 0 skipped", flush=True)
