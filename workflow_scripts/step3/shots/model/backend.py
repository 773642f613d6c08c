"""The model on one device with one precision, and one call of it."""
import warnings
from typing import Optional

import numpy as np
import torch

from shots.windows import KEEP_FROM, KEEP_TO, WINDOW

KIND_LABELS = {"eager": "eager", "torchscript": "TorchScript", "winograd": "Winograd CPU kernels"}


class Backend:
    """The model on one device with one precision. ``__call__`` takes a uint8
    ``[B, 100, 27, 48, 3]`` array and returns ``[B, 2, 50]`` probabilities
    (single-frame head, all-frames head) for the frames each window keeps."""

    def __init__(self, model: torch.nn.Module, device: torch.device, precision: str, fast=None):
        self.device = device
        self.precision = precision
        self.eager = model
        self.module = fast if fast is not None else model
        self.kind = "winograd" if fast is not None else "eager"  # which implementation runs
        self.batch = 1  # windows per call on this backend (halved on CUDA out of memory)
        self._staging: Optional[torch.Tensor] = None  # pinned host buffer, reused: pinning is slow

    def autocast(self):
        if self.precision == "fp16":
            return torch.autocast(self.device.type, dtype=torch.float16)
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return torch.autocast(self.device.type, enabled=False)

    def trace(self, batch: int) -> None:
        example = torch.zeros((batch, WINDOW, 27, 48, 3), dtype=torch.uint8, device=self.device)
        with torch.no_grad(), self.autocast(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # jit.trace is deprecated, still works
            warnings.simplefilter("error", torch.jit.TracerWarning)
            self.module = torch.jit.trace(self.eager, example, check_trace=False)
        self.kind = "torchscript"

    @property
    def torchscript(self) -> bool:
        return self.kind == "torchscript"

    def use_eager(self) -> None:
        self.module = self.eager
        self.kind = "eager"

    def __call__(self, windows) -> np.ndarray:
        """``windows``: uint8 ``[n, 100, 27, 48, 3]``, numpy, or a tensor
        (frames decoded on the GPU stay there)."""
        x = windows.to(self.device) if isinstance(windows, torch.Tensor) else torch.from_numpy(windows)
        if self.device.type == "cuda" and not x.is_cuda:
            n = x.shape[0]
            if self._staging is None or self._staging.shape[0] < n:
                self._staging = torch.empty((n,) + tuple(x.shape[1:]), dtype=torch.uint8).pin_memory()
            staging = self._staging[:n]
            staging.copy_(x)
            # The copy is asynchronous; the .cpu() below waits for the whole batch
            # before this buffer can be written again.
            x = staging.to(self.device, non_blocking=True)
        with torch.no_grad(), self.autocast():
            single, many = self.module(x)
            probs = torch.stack([single[:, KEEP_FROM:KEEP_TO, 0], many[:, KEEP_FROM:KEEP_TO, 0]], 1)
            probs = torch.sigmoid(probs.float())
        return probs.cpu().numpy()
