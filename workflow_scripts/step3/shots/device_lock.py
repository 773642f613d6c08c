"""One STEP3 model per GPU across runs.

Two runs on different projects folders (two dashboards, a terminal) would
put two models on one card, each at about half speed. A run that takes a GPU
holds an flock on a file named after the card (its UUID: indexes change with
CUDA_VISIBLE_DEVICES) in the system's temporary folder; a second run waits
for it, after one INFO line naming the run that has it (its pid, from
/proc/locks). The kernel drops the lock when the run ends, however it ends;
a cancel (SIGTERM) ends the wait too.
"""
import fcntl
import os
import re
import tempfile
from pathlib import Path
from typing import Callable

from shots.folder_lock import HeldLock, lock_or_holder


def lock_path(key: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:100]
    return Path(tempfile.gettempdir()) / f"step3-gpu-{safe}.lock"


def gpu_lock_for(device: str) -> "DeviceLock":
    """The lock of the card behind a torch device string ("cuda", "cuda:1"),
    keyed by its UUID where torch gives it."""
    import torch
    index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    return DeviceLock(str(uuid) if uuid else f"index-{index}", f"the GPU cuda:{index}")


class DeviceLock(HeldLock):
    def __init__(self, key: str, describe: str):
        self.path = lock_path(key)
        self.describe = describe

    def acquire(self, say: Callable[[str], None]) -> "DeviceLock":
        """Take the card, waiting (after one line through ``say``) while another run has it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError:
            return self  # no temporary folder to write: run unlocked, as before
        try:
            holder = lock_or_holder(fd)
            if holder is not None:
                say(f"waiting for {self.describe}: another STEP3 run ({holder}) is using it; "
                    f"this run starts when it ends")
                fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            os.close(fd)  # a file system without flock: run unlocked, as before
            return self
        except BaseException:  # a cancel while waiting
            os.close(fd)
            raise
        self._fd = fd
        return self
