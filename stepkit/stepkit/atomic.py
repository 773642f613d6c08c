"""Writing a file so that it is either the old file or the whole new one.

The data goes to a hidden temporary file in the same folder (so the rename
cannot cross file systems), is flushed to the disk, then renamed over the
name. Temporaries carry their writer's pid: one left by a killed run is
recognised, and removed, by the next run.
"""
import os
import re
import tempfile
from pathlib import Path
from typing import Iterable, List


def write_atomic(path: Path, data: bytes, prefix: str = ".tmp-") -> None:
    """Write ``data`` to ``path`` atomically; the temporary is ``<prefix><pid>-*.part``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}-", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; results are meant to be read
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def is_temporary(name: str, prefix: str) -> bool:
    return name.startswith(prefix) and name.endswith(".part")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folders: Iterable[Path], prefix: str) -> List[Path]:
    """Delete the temporaries of ``write_atomic(..., prefix)`` whose writer is gone."""
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)-")
    removed = []
    for folder in folders:
        try:
            entries = list(Path(folder).iterdir())
        except OSError:
            continue
        for entry in entries:
            m = pattern.match(entry.name)
            # Only names write_atomic makes: a user's file that merely starts
            # with the prefix is not ours to delete.
            if (m and is_temporary(entry.name, prefix) and int(m.group(1)) != os.getpid()
                    and not _pid_alive(int(m.group(1)))):
                try:
                    entry.unlink()
                    removed.append(entry)
                except OSError:
                    pass
    return removed
