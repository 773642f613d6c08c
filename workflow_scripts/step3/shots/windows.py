"""The official TransNetV2 windowing, streamed.

The official inference pads the video with 25 copies of its first frame before
and enough copies of its last frame after, slides a 100-frame window by 50, and
keeps the model's outputs 25..75 of each window, then trims to the frame count.
Here the frames flow through as they are decoded: only the last window's worth
of frames is ever held.
"""
from typing import List, Optional

import numpy as np

WINDOW = 100
STRIDE = 50
PAD_START = 25
KEEP_FROM, KEEP_TO = 25, 75


def end_padding(frame_count: int) -> int:
    """Copies of the last frame appended after a video of ``frame_count`` frames."""
    remainder = frame_count % STRIDE
    return PAD_START + STRIDE - (remainder if remainder else STRIDE)


def window_count(frame_count: int) -> int:
    return (frame_count + STRIDE - 1) // STRIDE


class WindowBuilder:
    """Feed frame chunks with ``push``, then call ``finish``; both return the
    windows that became complete, each a ``[100, 27, 48, 3]`` uint8 array."""

    def __init__(self):
        self._pending: Optional[np.ndarray] = None
        self.frame_count = 0

    def _drain(self) -> List[np.ndarray]:
        out = []
        while self._pending is not None and self._pending.shape[0] >= WINDOW:
            out.append(np.ascontiguousarray(self._pending[:WINDOW]))
            self._pending = self._pending[STRIDE:]
        return out

    def push(self, frames: np.ndarray) -> List[np.ndarray]:
        if frames.shape[0] == 0:
            return []
        if self._pending is None:
            head = np.repeat(frames[:1], PAD_START, axis=0)
            self._pending = np.concatenate([head, frames])
        else:
            self._pending = np.concatenate([self._pending, frames])
        self.frame_count += frames.shape[0]
        return self._drain()

    def finish(self) -> List[np.ndarray]:
        if self._pending is None:
            return []
        tail = np.repeat(self._pending[-1:], end_padding(self.frame_count), axis=0)
        self._pending = np.concatenate([self._pending, tail])
        out = self._drain()
        self._pending = None
        return out


def keep_center(outputs: np.ndarray) -> np.ndarray:
    """``[..., 100]`` per-window outputs -> the 50 frames each window is responsible for."""
    return outputs[..., KEEP_FROM:KEEP_TO]


def assemble(per_window: List[np.ndarray], frame_count: int) -> np.ndarray:
    """Concatenate the kept outputs of consecutive windows and trim the padding."""
    if not per_window:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(per_window)[:frame_count]
