"""Test step: what STEP3 does with its decoders, in small: a spawned worker
process and shared memory. Python starts its resource tracker for them, in
this step's process group, and the tracker exits by itself just after this
process does."""
import multiprocessing
import sys
from multiprocessing import shared_memory


def fill(name: str) -> None:
    block = shared_memory.SharedMemory(name=name)
    block.buf[:5] = b"hello"
    block.close()


if __name__ == "__main__":
    block = shared_memory.SharedMemory(create=True, size=4096)
    worker = multiprocessing.get_context("spawn").Process(target=fill, args=(block.name,))
    worker.start()
    worker.join()
    print(f"WORKER SAID {bytes(block.buf[:5]).decode()}", flush=True)
    block.close()
    block.unlink()
    sys.exit(worker.exitcode)
