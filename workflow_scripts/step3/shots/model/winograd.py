"""Winograd F(m x m, 3x3) for the 3x3 spatial convolutions of ``cpu_fast``: the
transform matrices, and the convolution of channels-last frames as batched GEMMs
over the (m + 2)^2 points of the input tiles (see cpu_fast.py for why).

Winograd changes the rounding, not the function; fp64 is used only to prepare
the weights.
"""
from typing import Dict, List, Tuple

import torch

# Interpolation points of the Winograd transforms F(m x m, 3x3), besides infinity:
# the usual small ones, which keep the fp32 rounding error low.
_POINTS = {4: (0, 1, -1, 2, -2), 6: (0, 1, -1, 2, -2, 0.5, -0.5)}


def winograd_matrices(m: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(BT, G, AT)`` in fp64 with ``y = AT [(G g) * (BT d)]`` the correlation of
    ``d`` (m + 2 samples) with the 3-tap ``g``, for the points in ``_POINTS``.

    AT and G are the Cook-Toom (Lagrange) ones; BT is solved from the identity
    the three must satisfy, so nothing is copied by hand.
    """
    points = [float(p) for p in _POINTS[m]]
    r, n = 3, m + 2
    at = torch.zeros(m, n, dtype=torch.float64)
    g = torch.zeros(n, r, dtype=torch.float64)
    for j, p in enumerate(points):
        denominator = 1.0
        for q in points:
            if q != p:
                denominator *= p - q
        for i in range(m):
            at[i, j] = p ** i
        for k in range(r):
            g[j, k] = p ** k / denominator
    at[m - 1, n - 1] = 1.0
    g[n - 1, r - 1] = 1.0
    # Unknowns BT[j, l]; one equation per (i, k, l):
    # sum_j AT[i, j] G[j, k] BT[j, l] = [l == i + k].
    coefficients = at[:, None, :] * g.t()[None, :, :]  # [i, k, j]
    system = torch.einsum("ikj,lL->ikljL", coefficients,
                          torch.eye(n, dtype=torch.float64)).reshape(m * r * n, n * n)
    target = torch.zeros(m, r, n, dtype=torch.float64)
    for i in range(m):
        for k in range(r):
            target[i, k, i + k] = 1.0
    bt = torch.linalg.lstsq(system, target.reshape(-1, 1)).solution.reshape(n, n)
    bt = torch.round(bt * 1024) / 1024  # its entries are small dyadic rationals
    if (system @ bt.reshape(-1, 1) - target.reshape(-1, 1)).abs().max() > 1e-12:
        raise RuntimeError(f"Winograd F({m}, 3) transform does not check out")
    return bt, g, at


class Winograd3x3:
    """'Same' 3x3 convolution of channels-last frames, Winograd F(m x m, 3x3).

    Two layouts of the zero-bordered input and of the output:

    - per frame: input ``[N, m*th + 2, W + 2, C]``, each frame padded on its own;
      output ``[4, N, H, W, K/4]``.
    - tall (``tall=True``): the frames stacked into one tall image with a single
      zero row between consecutive frames, ``[m*th + 2, W + 2, C]`` with frame
      ``f``'s row ``h`` at row ``1 + f*(H+1) + h``. A 3x3 convolution never
      reads across a zero row, so tiles may straddle frames; this pays tile
      padding once per frame (one row) instead of rounding every frame up to a
      whole number of tiles (13 rows would need 18 with m = 6). Output
      ``[4, m*th, W, K/4]`` in the same tall rows (the separator rows hold
      garbage and are never read).

    The output keeps the four dilated branches' channels apart, each
    contiguous, as their temporal convolutions want them.
    """

    def __init__(self, weight: torch.Tensor, height: int, width: int, m: int, chunk_frames: int, tall: bool):
        k, c = weight.shape[0], weight.shape[1]
        if width % m:
            raise ValueError(f"Expected a frame width divisible by {m}, got {width}")
        bt, g, at = winograd_matrices(m)
        a = m + 2
        u = torch.einsum("ai,kcij,bj->abck", g, weight.double(), g)
        self.u = u.reshape(a * a, c, k).float().contiguous()
        self.bt = bt.float()
        self.at = at.float()
        self.bt_batch = self.bt.expand(a, a, a)
        self.at_batch = self.at.expand(m, m, a)
        self.m, self.a, self.tall = m, a, tall
        self.c, self.k, self.h, self.w = c, k, height, width
        self.tw, self.wp = width // m, width + 2
        # rows of a frame in the output layout; the temporal convolutions run on all of them
        self.rows_per_frame = height + 1 if tall else height
        self.th_frame = (height + m - 1) // m
        self.chunk_frames = chunk_frames
        self._buffers: Dict[Tuple[int, int], Tuple[torch.Tensor, ...]] = {}

    def _tall_tile_rows(self, frames: int) -> int:
        return (frames * self.rows_per_frame + self.m - 1) // self.m

    def padded_input(self, frames: int) -> torch.Tensor:
        if self.tall:
            return torch.zeros(self.m * self._tall_tile_rows(frames) + 2, self.wp, self.c)
        return torch.zeros(frames, self.m * self.th_frame + 2, self.wp, self.c)

    def interior(self, xp: torch.Tensor, frames: int) -> torch.Tensor:
        """The ``[N, H, W, C]`` view of the frames inside ``xp``."""
        if self.tall:
            rows = xp[1:1 + frames * self.rows_per_frame].view(frames, self.rows_per_frame, self.wp, self.c)
            return rows[:, :self.h, 1:self.w + 1]
        return xp[:, 1:self.h + 1, 1:self.w + 1]

    def output_buffer(self, frames: int) -> torch.Tensor:
        cb = self.k // 4
        if self.tall:
            return torch.empty(4, self.m * self._tall_tile_rows(frames), self.w, cb)
        return torch.empty(4, frames, self.h, self.w, cb)

    def branches(self, out: torch.Tensor, frames: int) -> List[torch.Tensor]:
        """Each branch's output as ``[N, rows_per_frame * W, K/4]``."""
        cb = self.k // 4
        pixels = self.rows_per_frame * self.w
        return [out[b].reshape(-1)[:frames * pixels * cb].view(frames, pixels, cb) for b in range(4)]

    def _chunk_buffers(self, tiles: int, slot: int):
        if (tiles, slot) not in self._buffers:
            m, a = self.m, self.a
            self._buffers[(tiles, slot)] = (
                torch.empty(a, a, tiles * self.c),  # input tiles
                torch.empty(a, a, tiles * self.c),  # after the row transform
                torch.empty(a * a, tiles, self.c),  # transformed tiles
                torch.empty(a * a, tiles, self.k),  # products
                torch.empty(m, a, tiles * self.k),  # after the first output transform
                torch.empty(m, m, tiles * self.k),  # output tiles
            )
        return self._buffers[(tiles, slot)]

    def _tiles(self, src: torch.Tensor, tiles: int, slot: int) -> torch.Tensor:
        """Output tiles ``[m, m, tiles * K]`` of the input tiles ``src`` ``[a, a, ..., C]``."""
        a, m = self.a, self.m
        gathered, rows, v, prod, half, y = self._chunk_buffers(tiles, slot)
        gathered.view(src.shape).copy_(src)
        torch.mm(self.bt, gathered.view(a, -1), out=rows.view(a, -1))
        torch.bmm(self.bt_batch, rows, out=v.view(a, a, -1))
        torch.bmm(v, self.u, out=prod)
        torch.mm(self.at, prod.view(a, -1), out=half.view(m, -1))
        torch.bmm(self.at_batch, half, out=y)
        return y

    def __call__(self, xp: torch.Tensor, out: torch.Tensor, slot: int, part: int = 0, parts: int = 1) -> None:
        """Part ``part`` of ``parts`` equal, contiguous parts of the convolution (all of it by default)."""
        m, a, c, k, tw, wp, h, w = self.m, self.a, self.c, self.k, self.tw, self.wp, self.h, self.w
        cb = k // 4
        base, branch_stride = xp.storage_offset(), out.stride(0)
        if self.tall:
            tile_rows = (xp.shape[0] - 2) // m
            step = max(1, round(self.chunk_frames * self.rows_per_frame / m))
            first, last = tile_rows * part // parts, tile_rows * (part + 1) // parts
            for r0 in range(first, last, step):
                nt = min(step, last - r0)
                src = xp.as_strided((a, a, nt, tw, c), (wp * c, c, m * wp * c, m * c, 1), base + r0 * m * wp * c)
                y = self._tiles(src, nt * tw, slot).view(m, m, nt, tw, 4, cb)
                out.as_strided((nt, m, tw, m, 4, cb), (m * w * cb, w * cb, m * cb, cb, branch_stride, 1),
                               out.storage_offset() + r0 * m * w * cb).copy_(y.permute(2, 0, 3, 1, 4, 5))
            return
        frames, hp, th = xp.shape[0], xp.shape[1], self.th_frame
        full_rows = m * (th - 1)
        rest = h - full_rows
        first, last = frames * part // parts, frames * (part + 1) // parts
        for n0 in range(first, last, self.chunk_frames):
            n = min(self.chunk_frames, last - n0)
            src = xp.as_strided((a, a, n, th, tw, c), (wp * c, c, hp * wp * c, m * wp * c, m * c, 1),
                                base + n0 * hp * wp * c)
            y7 = self._tiles(src, n * th * tw, slot).view(m, m, n, th, tw, 4, cb)
            # Untile: whole tile rows with one copy, the last (cropped) tile row with another.
            offset = out.storage_offset() + n0 * h * w * cb
            if th > 1:
                out.as_strided((n, th - 1, m, tw, m, 4, cb),
                               (h * w * cb, m * w * cb, w * cb, m * cb, cb, branch_stride, 1),
                               offset).copy_(y7[:, :, :, :th - 1].permute(2, 3, 0, 4, 1, 5, 6))
            out.as_strided((n, rest, tw, m, 4, cb),
                           (h * w * cb, w * cb, m * cb, cb, branch_stride, 1),
                           offset + full_rows * w * cb).copy_(y7[:rest, :, :, th - 1].permute(2, 0, 3, 1, 4, 5))
