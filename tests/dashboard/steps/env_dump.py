"""Test step: prints its argv and the environment variables the runner controls, as JSON."""
import json
import os
import sys

keys = ("PYTHONUNBUFFERED", "VIRTUAL_ENV", "DASHBOARD_TOKEN", "DASHBOARD_RUN_ID", "STEP_EXTRA")
print(json.dumps({"argv": sys.argv[1:], "env": {k: os.environ.get(k) for k in keys},
                  "cwd": os.getcwd(), "executable": sys.executable, "prefix": sys.prefix,
                  "session_leader": os.getsid(0) == os.getpid()}))
