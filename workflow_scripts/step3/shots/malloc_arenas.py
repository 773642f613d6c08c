"""One malloc arena for the whole process.

glibc gives threads their own arenas (up to 8 per core). STEP3's threads
(the engine's, the model's, the CPU model's second lane) allocate and free
the same large buffers (windows, chunks, activations) over and over, and
each arena keeps the peak it has seen, so the process grew with the length
of the video. Measured with the CPU model on a one-hour video (2 cores): 6 GB
after twelve minutes with glibc's defaults, 1.33 GB at the end with 2
arenas, 1.17 GB with one (1.03 GB for a one-minute video). Sharing one
arena's lock cost nothing measurable (interleaved runs on the sample:
70-74 s either way): the threads allocate few, large blocks. See
bench/RESULTS.md.
"""
import ctypes
import sys

_M_ARENA_MAX = -8


def limit_arenas(count: int = 1) -> bool:
    """Cap the arenas created from now on (call it before starting threads).
    False where this is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, count))
    except (OSError, AttributeError):
        return False
