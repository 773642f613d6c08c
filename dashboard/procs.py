"""Process groups: signalling a step and everything it started.

Each step runs in its own session, so its process group id is its pid and a
signal to the group reaches its children and grandchildren too.
"""
import os
import signal
import time

import psutil


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the group; False when the group is gone."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def exited(pid: int) -> bool:
    """Whether our child ``pid`` has exited, without reaping it.

    Leaving the zombie in place keeps its pid, hence its group id, reserved,
    so the group can still be signalled safely after the child has exited.
    """
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def tagged(name: str, value: str) -> list[psutil.Process]:
    """Live processes whose environment has ``name=value`` (only our own user's
    environments are readable, which are the only ones we could signal)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.pid != os.getpid() and proc.environ().get(name) == value \
                    and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def started_at(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def end_stale_group(pgid: int, leader_started_at: float | None, grace: float) -> int:
    """End what is left of a group from a previous server, if it is still ours.

    Returns the number of processes that were ended. A group whose leader is a
    different process (the pid was reused) is left alone.
    """
    members = group_members(pgid)
    for proc in members:
        if proc.pid == pgid:
            try:
                if leader_started_at is None or abs(proc.create_time() - leader_started_at) > 0.5:
                    return 0
            except psutil.Error:
                pass
    if not members:
        return 0
    for proc in members:
        _send(proc, signal.SIGTERM)
    _, alive = psutil.wait_procs(members, timeout=grace)
    for proc in alive:
        _send(proc, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=2)
    return len(members)


def _send(proc: psutil.Process, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except psutil.Error:
        pass


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        sig = -returncode
        try:
            return f"killed by signal {sig} ({signal.Signals(sig).name})"
        except ValueError:
            return f"killed by signal {sig}"
    return f"exit code {returncode}"


def wait_gone(pids, timeout: float) -> list[int]:
    """Pids among ``pids`` still alive after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [p for p in left if psutil.pid_exists(p) and _not_zombie(p)]
        if left:
            time.sleep(0.02)
    return left


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
