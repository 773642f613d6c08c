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


def wait_exited(pid: int, timeout: float) -> None:
    """Wait up to ``timeout`` for our child ``pid`` to exit, leaving it unreaped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not exited(pid):
        time.sleep(0.01)


def pgid_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def running(proc: psutil.Process) -> bool:
    """Alive and not a zombie (a zombie holds its pid but can do nothing)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def escaped_descendants(pid: int) -> list[psutil.Process]:
    """Descendants of ``pid`` that left its process group (setsid): a signal
    to the group misses them, so they must be signalled one by one."""
    try:
        pgid = os.getpgid(pid)
        return [c for c in psutil.Process(pid).children(recursive=True) if pgid_of(c.pid) not in (pgid, None)]
    except (ProcessLookupError, psutil.Error):
        return []


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
    # While the leader lives, what it started in sessions of their own is still below it.
    known = {p.pid for p in members}
    members += [p for p in escaped_descendants(pgid) if p.pid not in known]
    return _end_all(members, grace)


def _end_all(found: list[psutil.Process], grace: float) -> int:
    """SIGTERM, then SIGKILL after ``grace``; returns how many there were."""
    for proc in found:
        send(proc, signal.SIGTERM)
    _, alive = psutil.wait_procs(found, timeout=grace)
    for proc in alive:
        send(proc, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=2)
    return len(found)


def end_tracked(tracking: dict | None, tag_name: str, grace: float) -> int:
    """End a previous server's run's processes outside its group: those with its
    environment tag, and those recorded as having left the group (an emptied
    environment has no tag), each only if its start time matches (no reused pid)."""
    if not isinstance(tracking, dict):
        return 0
    found = {p.pid: p for p in tagged(tag_name, tracking["tag"])} if tracking.get("tag") else {}
    for entry in tracking.get("escapees") or []:
        try:
            pid, started = int(entry[0]), float(entry[1])
            proc = psutil.Process(pid)
            if abs(proc.create_time() - started) < 0.5 and running(proc):
                found.setdefault(pid, proc)
        except (psutil.Error, TypeError, ValueError, IndexError):
            continue
    return _end_all(list(found.values()), grace) if found else 0


def send(proc: psutil.Process, sig: int) -> None:
    """Signal one process; one that is already gone is not an error."""
    try:
        proc.send_signal(sig)
    except psutil.Error:
        pass


def signal_tree(pgid: int, escapees, sig: int) -> None:
    """Signal a step's group and the descendants noted as having left it."""
    signal_group(pgid, sig)
    for proc in escapees:
        send(proc, sig)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        sig = -returncode
        try:
            return f"killed by signal {sig} ({signal.Signals(sig).name})"
        except ValueError:
            return f"killed by signal {sig}"
    return f"exit code {returncode}"
