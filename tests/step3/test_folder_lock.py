"""One STEP3 run per projects folder (issue 10, item 10): a second run on the
same folder stops at once with one line naming the first; the first goes on."""
import os
import subprocess
import sys
import time

from conftest import SCRIPT, make_cuts_video, read_csv_rows

from shots.folder_lock import FolderBusy, FolderLock


def holds_flock(pid: int, path) -> bool:
    st = os.stat(path)
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with open("/proc/locks") as f:
        return any(line.split()[1] == "FLOCK" and line.split()[4] == str(pid) and line.split()[5] == wanted
                   for line in f)


def test_a_second_run_on_the_same_folder_refuses_and_the_first_completes(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    make_cuts_video(folder / "clip.mp4", seconds_per_segment=2, segments=3)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    first = subprocess.Popen([sys.executable, str(SCRIPT), "--input-dir", str(folder), "--log-dir",
                              str(tmp_path / "logs")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env)
    try:
        deadline = time.monotonic() + 60
        while not holds_flock(first.pid, folder):
            assert first.poll() is None and time.monotonic() < deadline, "the first run never locked the folder"
            time.sleep(0.02)
        second = subprocess.run([sys.executable, str(SCRIPT), "--input-dir", str(folder), "--log-dir",
                                 str(tmp_path / "logs2")], capture_output=True, text=True, timeout=120, env=env)
        assert second.returncode == 2
        errors = [ln for ln in second.stdout.splitlines() if ln.startswith("ERROR:")]
        assert errors == [f"ERROR: {folder} is being analysed by another STEP3 run (pid {first.pid}); "
                          f"run this one when it has ended"]
        out, err = first.communicate(timeout=600)
        assert first.returncode == 0, err[-2000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert len(read_csv_rows(folder / "clip.csv")) == 1 + 3  # the header and three scenes
    # Once the first has ended the folder is free again (the kernel dropped its lock).
    with FolderLock(folder):
        pass


def test_the_lock_is_on_the_folder_itself_and_writes_nothing(tmp_path):
    before = sorted(tmp_path.iterdir())
    with FolderLock(tmp_path):
        try:
            FolderLock(tmp_path).acquire()
            raise AssertionError("a second lock on the same folder was granted")
        except FolderBusy as exc:
            assert f"(pid {os.getpid()})" in str(exc)
    assert sorted(tmp_path.iterdir()) == before
