"""Test step: starts a grandchild that sleeps, then sleeps itself.

--escape makes the grandchild leave the process group (setsid), as a daemon would.
--exit makes this process exit at once, leaving the grandchild behind;
--exit-after S makes it exit after S seconds.
"""
import subprocess
import sys
import time

escape = "--escape" in sys.argv
code = "import os, time\nif %r: os.setsid()\ntime.sleep(600)\n" % escape
child = subprocess.Popen([sys.executable, "-c", code])
print(f"GRANDCHILD {child.pid}", flush=True)
if "--exit" in sys.argv:
    sys.exit(0)
if "--exit-after" in sys.argv:
    time.sleep(float(sys.argv[sys.argv.index("--exit-after") + 1]))
    sys.exit(0)
time.sleep(600)
