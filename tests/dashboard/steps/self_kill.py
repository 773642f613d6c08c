"""Test step: dies by a signal (SIGKILL by default)."""
import os
import signal
import sys

print("going down", flush=True)
os.kill(os.getpid(), getattr(signal, sys.argv[1]) if len(sys.argv) > 1 else signal.SIGKILL)
