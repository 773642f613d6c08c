"""Test step: prints N lines as fast as it can, then how long the writes took.

The time spent writing shows whether the reader kept up: a child blocked on a
full pipe spends its time waiting in write().
"""
import sys
import time

n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
out = sys.stdout.buffer
start = time.perf_counter()
for i in range(n):
    out.write(b"line %d of the flood with some padding to look like a log\n" % i)
out.flush()
print(f"FLOOD_DONE lines={n} seconds={time.perf_counter() - start:.6f}", flush=True)
