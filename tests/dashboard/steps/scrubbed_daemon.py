"""Test step: starts a process in a session of its own with an empty
environment (no run tag), says its pid, then exits after --stay seconds."""
import subprocess
import sys
import time

stay = float(sys.argv[sys.argv.index("--stay") + 1]) if "--stay" in sys.argv else 0.0
daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True, env={},
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(f"DAEMON {daemon.pid}", flush=True)
time.sleep(stay)
