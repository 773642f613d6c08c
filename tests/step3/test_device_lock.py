"""One model per GPU across runs (issue 10, item 10): a second run waits for
the card, after one line naming the run that has it. CI has no GPU, so the
lock is tested under a made-up card key; on a GPU the key is the card's UUID."""
import fcntl
import os
import threading
import time
import uuid

from shots.device_lock import DeviceLock, lock_path


def test_a_second_run_waits_for_the_card_and_says_for_whom():
    key = f"test-{uuid.uuid4()}"
    first = DeviceLock(key, "the GPU cuda:0").acquire(lambda text: None)
    said, taken = [], threading.Event()

    def second():
        DeviceLock(key, "the GPU cuda:0").acquire(said.append)
        taken.set()

    thread = threading.Thread(target=second, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not said and time.monotonic() < deadline:
        time.sleep(0.01)
    assert said == [f"waiting for the GPU cuda:0: another STEP3 run (pid {os.getpid()}) is using it; "
                    f"this run starts when it ends"]
    assert not taken.wait(0.3)  # still waiting while the first holds it
    first.release()
    assert taken.wait(10)
    lock_path(key).unlink()


def test_the_lock_goes_with_the_run_not_with_the_process(tmp_path):
    """An executor's close (the driver calls it after every run) frees the
    card: a second run in the same process takes it at once."""
    from shots.config import load_config
    from shots.executors.local import LocalExecutor
    key = f"test-{uuid.uuid4()}"
    executor = LocalExecutor(load_config(["--input-dir", str(tmp_path)], environ={}), tmp_path / "weights.pth")
    executor.gpu_lock = DeviceLock(key, "the GPU cuda:0").acquire(lambda text: None)
    executor.close()
    executor.close()  # twice is harmless
    probe = os.open(lock_path(key), os.O_RDWR)
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises, rather than waits, if still held
    finally:
        os.close(probe)
    lock_path(key).unlink()
