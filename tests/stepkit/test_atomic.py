"""Atomic writes: a reader sees the old file or the whole new one; the
temporaries of a killed writer are cleared by the next run, and only those."""
import os
import stat
import subprocess
import sys
import textwrap

import pytest

from stepkit.atomic import remove_stale_temporaries, write_atomic

PREFIX = ".kit-tmp-"


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(PREFIX))


def test_the_whole_file_is_written_readable_by_others(tmp_path):
    target = tmp_path / "report.json"
    target.write_bytes(b"old")
    write_atomic(target, b"new contents", PREFIX)
    assert target.read_bytes() == b"new contents"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # not mkstemp's 0600
    assert leftovers(tmp_path) == []


def test_a_write_that_fails_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    """A real failure: the writer may not make files over 1000 bytes (as on a
    full disk, the write itself fails)."""
    target = tmp_path / "report.json"
    target.write_bytes(b"the old report")
    code = textwrap.dedent(f"""
        import resource, signal
        from pathlib import Path
        from stepkit.atomic import write_atomic
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error, not a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
        write_atomic(Path({str(target)!r}), b"x" * 100000, {PREFIX!r})
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "File too large" in out.stderr.strip().splitlines()[-1]
    assert target.read_bytes() == b"the old report"
    assert leftovers(tmp_path) == []


def test_a_rename_that_fails_leaves_no_temporary(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "inside").write_text("x")
    with pytest.raises(IsADirectoryError):  # a file cannot replace a folder
        write_atomic(tmp_path / "taken", b"data", PREFIX)
    assert leftovers(tmp_path) == [] and (tmp_path / "taken" / "inside").exists()


def test_temporaries_of_dead_writers_go_the_live_ones_stay(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(gone.stdout)  # its process has exited
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "dead": f"{PREFIX}{dead_pid}-abc.part",
            "alive": f"{PREFIX}{alive.pid}-def.part",
            "mine": f"{PREFIX}{os.getpid()}-ghi.part",
            "not_ours": f"{PREFIX}{dead_pid}-notes.txt",  # the prefix, but not a name write_atomic makes
            "other_prefix": f".other-{dead_pid}-x.part",
        }
        for name in names.values():
            (tmp_path / name).write_text("half")
        removed = remove_stale_temporaries([tmp_path, tmp_path / "missing"], PREFIX)
        assert removed == [tmp_path / names["dead"]]
        left = {p.name for p in tmp_path.iterdir()}
        assert left == set(names.values()) - {names["dead"]}
    finally:
        alive.kill()
        alive.wait()


def test_a_killed_writer_s_temporary_is_found_by_the_next_run(tmp_path):
    """The temporary really carries its writer's pid: a writer killed mid-way
    leaves one that the next run recognises and removes."""
    target = tmp_path / "big.bin"
    code = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        import stepkit.atomic as atomic
        real_fdopen = os.fdopen
        def stalled_fdopen(fd, *a, **k):
            fh = real_fdopen(fd, *a, **k)
            print("writing", flush=True)
            sys.stdin.readline()  # killed here, the temporary made, nothing renamed
            return fh
        atomic.os.fdopen = stalled_fdopen
        atomic.write_atomic(Path({str(target)!r}), b"data", {PREFIX!r})
    """)
    writer = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert writer.stdout.readline().strip() == "writing"
    writer.kill()
    writer.wait()
    [left] = leftovers(tmp_path)
    assert left.startswith(f"{PREFIX}{writer.pid}-") and left.endswith(".part")
    assert not target.exists()
    assert remove_stale_temporaries([tmp_path], PREFIX) == [tmp_path / left]
    assert leftovers(tmp_path) == []
