"""Few malloc arenas for the whole process.

glibc gives threads their own arenas (up to 8 per core), and threads move to
another arena when theirs is busy. STEP3's threads (the engine's, the
model's, the CPU model's second lane) allocate and free the same large
buffers (windows, chunks, activations) over and over; each arena they visit
keeps its own peak, so the process grows by a peak at every move. Measured
with the CPU model on a one-hour video (2 cores): 1.0 GB after two minutes,
1.9 GB after four, 6 GB after twelve; capped at 2 arenas it stayed at
0.93-0.98 GB over five minutes (1 arena: flat too, but ~7 % slower).
bench/RESULTS.md has the whole-run numbers.
"""
import ctypes
import sys

_M_ARENA_MAX = -8


def limit_arenas(count: int = 2) -> bool:
    """Cap the arenas created from now on (call it before starting threads).
    False where this is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, count))
    except (OSError, AttributeError):
        return False
