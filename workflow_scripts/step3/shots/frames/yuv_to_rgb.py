"""Decoded YUV planes -> the 48x27 RGB24 frames ffmpeg's default scaler makes,
as batched matrix products (PyTorch: the same code on the CPU and the GPU).

The numbers come from swscale_exact.py. Every step is integer arithmetic
carried in floating point only where that is exact: a product's terms and
every partial sum are integers, so a float32 sum is exact while their
magnitudes stay below 2**24 (checked per filter: 8-bit luma times the
horizontal filter, ~4.7M, passes; 10-bit input and the vertical pass, up to
~1.6e8, run in float64), whatever order the library sums in. TF32 and
autocast are kept out (they would round).
"""
from typing import Optional

import numpy as np
import torch

from shots.frames.swscale_exact import OUT_H, OUT_W, Filter, ScalePlan

FP32_EXACT = 1 << 24
# Frames converted per step: bounds the float copies of full-size planes
# (a 1080p frame's planes are 12 MB as float32). One pass over a batch of 32
# 1080p frames ran 3.2x as fast as four passes of 8 (H200, 8 threads: 19.8k
# against 6.1k frames/s; every pass is some fifty small kernels).
WORK_BYTES = 512 << 20


def _exact_dtype(bound: int, device: torch.device) -> torch.dtype:
    tf32 = device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
    return torch.float32 if bound < FP32_EXACT and not tf32 else torch.float64


class YuvToRgb:
    """One ScalePlan's matrices and tables on one device."""

    def __init__(self, plan: ScalePlan, device="cpu"):
        self.plan = plan
        self.device = torch.device(device)
        top = (1 << plan.depth) - 1
        self._lh, self._lh_dtype = self._horizontal(plan.luma_h, top)
        self._ch, self._ch_dtype = self._horizontal(plan.chroma_h, top)
        self._lv = torch.tensor(plan.luma_v.dense(), dtype=torch.float64, device=self.device)
        self._cv = torch.tensor(plan.chroma_v.dense(), dtype=torch.float64, device=self.device)
        t = plan.tables
        as_tensor = lambda a: torch.as_tensor(a, device=self.device)  # noqa: E731
        self._luma_table = as_tensor(t.luma_table)
        self._r_v, self._g_u, self._g_v, self._b_u = (as_tensor(a) for a in (t.r_from_v, t.g_from_u,
                                                                               t.g_from_v, t.b_from_u))
        # Luma and chroma as floats (float64 for 10-bit input), and the integer
        # planes split from a P016 surface (nvdec_source.py: three int32 copies).
        width = 8 if torch.float64 in (self._lh_dtype, self._ch_dtype) else 4
        per_frame = plan.width * plan.height * (width * 3 // 2 + (12 if plan.depth > 8 else 0))
        self.step = max(1, WORK_BYTES // per_frame)

    def _horizontal(self, f: Filter, top: int):
        dense = f.dense()
        bound = top * int(np.abs(dense).sum(axis=1).max())
        dtype = _exact_dtype(bound, self.device)
        return torch.tensor(dense.T, dtype=dtype, device=self.device), dtype

    def __call__(self, y, u, v) -> torch.Tensor:
        """``y`` ``[n, H, W]``, ``u``/``v`` ``[n, cH, cW]`` integer samples (numpy
        or torch); returns uint8 ``[n, 27, 48, 3]`` on this device."""
        y, u, v = (torch.as_tensor(p, device=self.device) for p in (y, u, v))
        parts = []
        with torch.autocast(self.device.type, enabled=False):
            for i in range(0, y.shape[0], self.step):
                s = slice(i, i + self.step)
                parts.append(self._convert(y[s], u[s], v[s]))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _convert(self, y, u, v) -> torch.Tensor:
        shift = float(1 << self.plan.intermediate_shift)
        yh = self._hpass(y, self._lh, self._lh_dtype, shift)
        uh = self._hpass(u, self._ch, self._ch_dtype, shift)
        vh = self._hpass(v, self._ch, self._ch_dtype, shift)
        if self.plan.full_chroma:
            return self._full(yh, uh, vh)
        return self._shared(yh, uh, vh)

    @staticmethod
    def _hpass(x: torch.Tensor, m: torch.Tensor, dtype: torch.dtype, shift: float) -> torch.Tensor:
        """15-bit intermediates: (sum >> shift), capped at 32767; as float64."""
        s = torch.matmul(x.to(dtype), m)
        return torch.floor(s / shift).clamp_(max=32767).to(torch.float64)

    def _shared(self, yh, uh, vh) -> torch.Tensor:
        """4:2:0/4:2:2: 8-bit Y, U, V, then the lookup tables; two pixels per chroma sample."""
        y = torch.floor((torch.matmul(self._lv, yh) + (1 << 18)) / (1 << 19)).long()
        u = torch.floor((torch.matmul(self._cv, uh) + (1 << 18)) / (1 << 19)).long().clamp_(0, 255)
        v = torch.floor((torch.matmul(self._cv, vh) + (1 << 18)) / (1 << 19)).long().clamp_(0, 255)
        u = u.repeat_interleave(2, dim=-1)
        v = v.repeat_interleave(2, dim=-1)
        top = self._luma_table.shape[0] - 1
        r = self._luma_table[(y + self._r_v[v]).clamp_(0, top)]
        g = self._luma_table[(y + self._g_u[u] + self._g_v[v]).clamp_(0, top)]
        b = self._luma_table[(y + self._b_u[u]).clamp_(0, top)]
        return torch.stack((r, g, b), dim=-1)

    def _full(self, yh, uh, vh) -> torch.Tensor:
        """4:4:4: each pixel through 30-bit arithmetic (C int32, wrapping)."""
        t = self.plan.tables
        y = torch.floor((torch.matmul(self._lv, yh) + (1 << 9)) / (1 << 10)).long()
        chroma_bias = (1 << 9) - (128 << 19)
        u = torch.floor((torch.matmul(self._cv, uh) + chroma_bias) / (1 << 10)).long()
        v = torch.floor((torch.matmul(self._cv, vh) + chroma_bias) / (1 << 10)).long()
        y = _int32((y - t.full_y_offset) * t.full_y_coeff) + (1 << 21)
        channels = (y + v * t.full_v2r, y + v * t.full_v2g + u * t.full_u2g, y + u * t.full_u2b)
        out = [(_int32(c).clamp_(0, (1 << 30) - 1) >> 22).to(torch.uint8) for c in channels]
        return torch.stack(out, dim=-1)


def _int32(x: torch.Tensor) -> torch.Tensor:
    """``x`` as C's int32 arithmetic leaves it (two's complement wrap)."""
    return torch.remainder(x + (1 << 31), 1 << 32) - (1 << 31)


def split_semiplanar(frames: torch.Tensor, height: int, shift: int = 0):
    """NV12/P016 surfaces ``[n, H * 3 // 2, W]`` (interleaved chroma below the
    luma) as ``y, u, v`` planes; ``shift`` drops the padding bits of P016."""
    y = frames[:, :height]
    uv = frames[:, height:]
    u, v = uv[..., 0::2], uv[..., 1::2]
    if shift:
        y, u, v = (p.to(torch.int32) >> shift for p in (y, u, v))
    return y, u, v


def converter(plan: ScalePlan, device="cpu", cache: Optional[dict] = None) -> YuvToRgb:
    """A YuvToRgb for ``plan`` on ``device``, reused from ``cache`` when given."""
    key = (id(plan), str(device))
    if cache is not None and key in cache:
        return cache[key]
    out = YuvToRgb(plan, device)
    if cache is not None:
        cache[key] = out
    return out


assert (OUT_H, OUT_W) == (27, 48)
