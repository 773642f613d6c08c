"""Test step: leaves a child behind, as Python's multiprocessing resource tracker does.

The child stays in the step's process group, waits for this process to exit
(the end of a pipe only this process holds), then lives --lives S seconds
more and exits by itself. A small S is the tracker's normal exit; a large one
is a process really left behind.
"""
import os
import subprocess
import sys

lives = float(sys.argv[sys.argv.index("--lives") + 1]) if "--lives" in sys.argv else 0.3
read_end, write_end = os.pipe()
code = "import os, sys, time\nos.read(int(sys.argv[1]), 1)\ntime.sleep(float(sys.argv[2]))\n"
child = subprocess.Popen([sys.executable, "-c", code, str(read_end), str(lives)], pass_fds=(read_end,))
os.close(read_end)
print(f"CHILD {child.pid}", flush=True)
# Exit at once: write_end closes with this process, and the child's wait begins.
