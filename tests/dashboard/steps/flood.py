"""Test step: prints N lines as fast as it can (or at --rate lines/s), then how its writes went.

A child blocked on a full pipe spends its time waiting in write(): the longest
single write (max_write_ms) shows whether the reader kept up.
"""
import argparse
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("lines", type=int, nargs="?", default=200_000)
parser.add_argument("--rate", type=float, default=0.0, help="lines per second, in 10 ms bursts (0: no pacing)")
args = parser.parse_args()

out = sys.stdout.buffer
burst = max(1, int(args.rate / 100)) if args.rate else 1000
start = time.perf_counter()
max_write = 0.0
written = 0
while written < args.lines:
    count = min(burst, args.lines - written)
    chunk = b"".join(b"line %d of the flood with some padding to look like a log\n" % (written + i) for i in range(count))
    t = time.perf_counter()
    out.write(chunk)
    out.flush()
    max_write = max(max_write, time.perf_counter() - t)
    written += count
    if args.rate:
        delay = start + written / args.rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
elapsed = time.perf_counter() - start
print(f"FLOOD_DONE lines={written} seconds={elapsed:.6f} max_write_ms={max_write * 1000:.3f}", flush=True)
