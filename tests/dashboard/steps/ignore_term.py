"""Test step: ignores SIGTERM, so that only SIGKILL can end it."""
import os
import signal
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(f"READY {os.getpid()}", flush=True)
while True:
    time.sleep(0.1)
