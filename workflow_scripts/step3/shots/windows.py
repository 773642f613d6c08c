"""The official TransNetV2 windowing, streamed.

The official inference pads the video with 25 copies of its first frame before
and enough copies of its last frame after, slides a 100-frame window by 50, and
keeps the model's outputs 25..75 of each window, then trims to the frame count.
Here the frames flow through as they are decoded: only the last window's worth
of frames is ever held.

Frames are numpy arrays, or torch tensors where a GPU decoder made them
(frames/nvdec_source.py): those stay on the GPU, window included, into the
model's batch. A video whose segments came from both kinds of decoder has
its host frames copied to the GPU.
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


def _is_tensor(frames) -> bool:
    return not isinstance(frames, np.ndarray)


def _concat(a, b):
    if _is_tensor(a) or _is_tensor(b):
        import torch
        device = (a if _is_tensor(a) else b).device
        return torch.cat([torch.as_tensor(x, device=device) for x in (a, b)])
    return np.concatenate([a, b])


def _repeat(frame, times: int):
    """``frame`` (``[1, ...]``) ``times`` times."""
    if _is_tensor(frame):
        return frame.expand((times,) + tuple(frame.shape[1:]))
    return np.repeat(frame, times, axis=0)


def _copy(frames):
    return frames.contiguous().clone() if _is_tensor(frames) else np.ascontiguousarray(frames)


def _settle(frames) -> None:
    """GPU frames: wait for this thread's copies before the caller lets go of
    the decoder's tensors (their memory belongs to the decoder's stream, which
    may reuse it at once) and before the model's stream reads the windows."""
    if frames is not None and _is_tensor(frames) and frames.is_cuda:
        import torch
        torch.cuda.current_stream(frames.device).synchronize()


def stack(windows: list, on_cpu: bool = False):
    """One batch ``[n, 100, 27, 48, 3]`` of windows; on the GPU if any is
    there, unless the batch is for the CPU's model (a GPU that failed)."""
    if on_cpu:
        return np.stack([w.cpu().numpy() if _is_tensor(w) else w for w in windows])
    if not any(_is_tensor(w) for w in windows):
        return np.stack(windows)
    import torch
    device = next(w.device for w in windows if _is_tensor(w))
    return torch.stack([torch.as_tensor(w, device=device) for w in windows])


class WindowBuilder:
    """Feed frame chunks with ``push``, then call ``finish``; both return the
    windows that became complete, each a ``[100, 27, 48, 3]`` uint8 array."""

    def __init__(self):
        self._pending: Optional[np.ndarray] = None
        self.frame_count = 0

    def _drain(self) -> List[np.ndarray]:
        out = []
        while self._pending is not None and self._pending.shape[0] >= WINDOW:
            out.append(_copy(self._pending[:WINDOW]))
            self._pending = self._pending[STRIDE:]
        return out

    def push(self, frames) -> list:
        if frames.shape[0] == 0:
            return []
        if self._pending is None:
            self._pending = _concat(_repeat(frames[:1], PAD_START), frames)
        else:
            self._pending = _concat(self._pending, frames)
        self.frame_count += frames.shape[0]
        out = self._drain()
        _settle(self._pending)
        return out

    def finish(self) -> List[np.ndarray]:
        if self._pending is None:
            return []
        self._pending = _concat(self._pending, _repeat(self._pending[-1:], end_padding(self.frame_count)))
        out = self._drain()
        _settle(self._pending)
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
