"""What runs on the cluster's CPU workers: probing and planning a video, and
decoding one segment of it, with the same code as the local engine
(frames/segments.py, frames/ffmpeg_reader.py), and the check that every node
can read the videos.

A decoding task is a Ray generator: it yields the frames in chunks of
``CHUNK_FRAMES`` (uint8 ``[n, 27, 48, 3]``), then its ``DecodeReport``, or a
``Failure`` with the same one-line cause the local engine gives. Ray retries
it if its worker dies (the generator is replayed, and the chunks the driver
already has are not given twice: ffmpeg's output is deterministic).
"""
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import ray

from shots.frames.ffmpeg_reader import FrameReader
from shots.frames.messages import SegmentPlan
from shots.frames.probe import DecodeError, VideoInfo, check_readable
from shots.frames.segments import plan_video

# 512 frames = 2 MB per object: few enough objects, small enough to bound memory.
CHUNK_FRAMES = 512
DECODE_RETRIES = 3


@dataclass(frozen=True)
class Failure:
    cause: str  # one line, as the local engine says it


@ray.remote(num_cpus=0, max_retries=DECODE_RETRIES)
def plan(path: str, split_seconds: Optional[float], split_frames: Optional[int]):
    """``(info, segments)`` or a Failure (probing takes a moment of one core: no CPU reserved)."""
    try:
        return plan_video(Path(path), split_seconds, split_frames)
    except DecodeError as exc:
        return Failure(str(exc))
    except Exception as exc:
        return Failure(f"unexpected error while probing: {type(exc).__name__}: {exc}")


@ray.remote(num_cpus=1, max_retries=DECODE_RETRIES)
def decode(info: VideoInfo, segment: SegmentPlan, threads: int):
    reader = None
    try:
        # As ffmpeg_process.py: a split video's segments keep the file's own timestamps.
        reader = FrameReader(info, threads=threads, chunk=CHUNK_FRAMES, start=segment.start,
                             max_frames=segment.frames, absolute=segment.frames is not None)
        while True:
            frames = reader.read()
            if frames is None:
                break
            yield frames
        yield reader.finish()
    except DecodeError as exc:
        yield Failure(str(exc))
    except Exception as exc:  # a bug costs one video, not the run
        yield Failure(f"unexpected error while decoding: {type(exc).__name__}: {exc}")
    finally:
        if reader is not None:
            reader.kill()  # a cancelled or failed task leaves no ffmpeg behind


def signature(path: str) -> str:
    """What this node sees at ``path``: its size, or why it cannot read it."""
    try:
        check_readable(Path(path))
        st = os.stat(path)
    except DecodeError as exc:
        return f"error: {exc}"
    except OSError as exc:
        return f"error: {exc.strerror or exc}"
    return f"size {st.st_size}" if stat.S_ISREG(st.st_mode) else "error: not a regular file"


@ray.remote(num_cpus=0, max_retries=DECODE_RETRIES)
def check_paths(paths: List[str]) -> List[str]:
    """One per node: the signature of every video of the run, as that node sees it."""
    return [signature(p) for p in paths]
