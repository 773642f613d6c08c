"""TransNetV2 inference tuned for small x86 CPUs (fp32; no bf16 hardware needed).

``build_cpu_model(model)`` returns a callable with the eager model's interface:
uint8 ``[B, T, 27, 48, 3]`` in, the two heads' logits ``[B, T, 1]`` each out,
computed from ``model``'s own weights. Same function, fewer operations:

- The 3x3 spatial convolutions (~89% of the FLOPs) run as Winograd
  F(6x6, 3x3): batched GEMMs over the 64 points of 8x8 input tiles, ~1.8
  multiplications per output and channel pair instead of 9. The tile
  transforms are small GEMMs too; the work goes in chunks of frames so that
  transformed tiles are still in cache when the next step reads them.
- Frames stacked into one tall image (one zero row between frames) for the
  27- and 13-row stacks, so tile padding is paid once per frame rather than by
  rounding every frame up to whole tiles.
- Activations stay channels-last, which the GEMMs want and which is the order
  the dense head flattens in; each dilated branch's channels are kept apart and
  contiguous, so its (3x1x1) temporal convolution runs as one oneDNN 2-D
  convolution over (frames, pixels) without a copy. Batch norm is folded into
  those convolutions, 1/255 into the first one, and the ReLUs into copies that
  happen anyway.
- Intermediates live in buffers made once per window length and written with
  ``out=``. The eager model allocates ~1 GB per window, and glibc returns such
  blocks to the kernel, so every call faults them in again (~120k page faults a
  window); see also ``keep_freed_memory``.
- With 2 threads, the independent pieces of each stage (branches, Winograd
  chunks) go to two threads of one core each instead of running every op on
  2 OpenMP threads: as fast on an idle machine, and several times faster on a
  busy one. Batches put one window on each thread.

Winograd changes the rounding, not the function: on the sample video the
probabilities move by ~1e-6 (tests/step3/test_cpu_fast.py). fp64 is used only
to prepare the weights.
"""
import ctypes
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from shots.model.network import TransNetV2, check_frames, neighbour_similarities

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


DILATIONS = (1, 2, 4, 8)


class _Winograd3x3:
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


class _Temporal:
    """The four dilated (3x1x1) convolutions of a block, batch norm folded in.

    Each branch is a (3x1) 2-D convolution over (frames, pixels) of its own
    contiguous channels-last input: oneDNN runs these ~2x faster than the
    equivalent skinny GEMMs (16-64 output channels) in MKL.
    """

    def __init__(self, block):
        bn = block.bn
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        shift = bn.bias.double() - bn.running_mean.double() * scale
        self.branches = []
        convs = [block.Conv3D_1, block.Conv3D_2, block.Conv3D_4, block.Conv3D_8]
        f = convs[0].layers[1].weight.shape[0]
        for b, (conv, d) in enumerate(zip(convs, DILATIONS)):
            s = scale[b * f:(b + 1) * f]
            weight = (conv.layers[1].weight.double()[:, :, :, :, 0] * s[:, None, None, None]).float().contiguous()
            bias = shift[b * f:(b + 1) * f].float().contiguous()
            self.branches.append((d, weight, bias))
        self.out_channels = 4 * f
        self.branch_channels = f

    def branch(self, b: int, mid: torch.Tensor) -> torch.Tensor:
        """Branch ``b`` of ``[T, P, cm]`` (P pixels per frame) -> ``[T, P, f]``."""
        d, weight, bias = self.branches[b]
        t, pixels, cm = mid.shape
        x = mid.view(1, t, pixels, cm).permute(0, 3, 1, 2)  # NCHW view, channels-last memory
        y = F.conv2d(x, weight, bias, 1, (d, 0), (d, 1))
        return y.permute(0, 2, 3, 1).reshape(t, pixels, self.branch_channels)


def _pool_into(x: torch.Tensor, out: torch.Tensor) -> None:
    """2x2 average pooling (floor) of ``[T, H, W, C]`` into the view ``out``."""
    h2, w2 = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
    torch.add(x[:, 0:h2:2, 0:w2:2], x[:, 1:h2:2, 0:w2:2], out=out)
    out.add_(x[:, 0:h2:2, 1:w2:2]).add_(x[:, 1:h2:2, 1:w2:2]).mul_(0.25)


# Frames per Winograd chunk, per stack: small enough for a chunk's transformed
# tiles and products to stay in cache, large enough that the last stack's big
# transformed weights are not re-read too often. Measured on a 2-core Zen 3.
CHUNKS = (5, 10, 100)
# The tall layout (see _Winograd3x3) for the 27- and 13-row stacks; the 6-row
# stack's frames are exactly one tile high already.
TALL = (True, True, False)
# F(6x6, 3x3) needs 1.8 multiplications per output against F(4x4)'s 2.25, wastes
# less on tile padding here (27 = 5x6 - 3 rows, and 6x12 is exactly 1x2 tiles)
# and moves less data through the transforms; its larger rounding error is
# still ~1e-6 on the probabilities.
TILES = (6, 6, 6)


class _Lanes:
    """Two lanes of work: the calling thread and one helper thread, each
    running its ops on one core.

    Inside one window this replaces OpenMP's 2-thread ops: ~15 joins per
    window instead of a barrier in each of ~400 ops. That is as fast on an
    idle machine and degrades gracefully on a busy one, where a 2-thread
    OpenMP op stalls whenever one of its threads is descheduled.
    """

    def __init__(self):
        self._helper = ThreadPoolExecutor(1, thread_name_prefix="cpu_fast_lane")
        self._helper.submit(torch.set_num_threads, 1).result()  # the helper thread's own setting

    def run(self, jobs0, jobs1) -> None:
        def helper():
            with torch.no_grad():
                for job in jobs1:
                    job()
        pending = self._helper.submit(helper)
        try:
            for job in jobs0:
                job()
        finally:
            pending.result()


class _Plan:
    """The buffers one window of ``frames`` frames needs, made once."""

    def __init__(self, fast: "CpuTransNetV2", frames: int):
        t = frames
        self.frames = t
        self.stacks = []
        for stack in fast.stacks:
            sh, sw = stack["h"], stack["w"]
            s = {"mid": stack["wino2"].output_buffer(t), "xp2": stack["wino2"].padded_input(t)}
            if stack["wino1"] is not None:
                s["xp1"] = stack["wino1"].padded_input(t)
            self.stacks.append(s)
        last = fast.stacks[-1]
        self.pooled_last_hwc = (last["h"] // 2) * (last["w"] // 2) * last["out_channels"]
        self.head_in = torch.empty(t, 256 + self.pooled_last_hwc)
        self.hidden = torch.empty(t, fast.fc1_w.shape[1])


class CpuTransNetV2:
    """Inference-only TransNetV2 for the CPU; see the module docstring."""

    def __init__(self, model: TransNetV2):
        self.model = model
        self.height, self.width = 27, 48
        self.stacks = []
        h, w = self.height, self.width
        with torch.no_grad():
            for i, stack in enumerate(model.SDDCNN):
                b1, b2 = stack.DDCNN[0], stack.DDCNN[1]
                entry = {"h": h, "w": w}
                spatial1 = self._spatial_weight(b1).double()
                spatial2 = self._spatial_weight(b2).double()
                entry["mid_channels"] = spatial1.shape[0]
                if i == 0:
                    # 1/255 folded in; one 32-channel conv per branch so that each
                    # branch's output is contiguous for its temporal convolution.
                    self.first_w = [part.float().contiguous() for part in torch.split(spatial1 / 255.0, spatial1.shape[0] // 4)]
                    entry["wino1"] = None
                else:
                    entry["wino1"] = _Winograd3x3(spatial1, h, w, TILES[i], CHUNKS[i], TALL[i])
                entry["wino2"] = _Winograd3x3(spatial2, h, w, TILES[i], CHUNKS[i], TALL[i])
                entry["temporal1"] = _Temporal(b1)
                entry["temporal2"] = _Temporal(b2)
                entry["out_channels"] = entry["temporal1"].out_channels
                if not b1.activation or b2.activation:
                    raise ValueError("Expected a ReLU after the first block of a stack only")
                self.stacks.append(entry)
                h, w = h // 2, w // 2
            self.fc1_w = model.fc1.weight.t().contiguous()
            self.fc1_b = model.fc1.bias.detach().clone()
            self.cls_w = torch.cat([model.cls_layer1.weight, model.cls_layer2.weight], 0).t().contiguous()
            self.cls_b = torch.cat([model.cls_layer1.bias, model.cls_layer2.bias], 0)
        self._plans: Dict[Tuple[int, int], _Plan] = {}
        self._pool: Optional[ThreadPoolExecutor] = None
        self._pool_workers = 0
        self.parallel_windows = True
        self.lanes = True
        self._lanes: Optional[_Lanes] = None

    @staticmethod
    def _spatial_weight(block) -> torch.Tensor:
        w = torch.cat([block.Conv3D_1.layers[0].weight, block.Conv3D_2.layers[0].weight,
                       block.Conv3D_4.layers[0].weight, block.Conv3D_8.layers[0].weight], 0)
        return w[:, :, 0]  # [K, C, 3, 3]

    def _plan(self, frames: int, slot: int) -> _Plan:
        if (frames, slot) not in self._plans:
            self._plans[(frames, slot)] = _Plan(self, frames)
        return self._plans[(frames, slot)]

    def __call__(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        check_frames(inputs)
        if inputs.device.type != "cpu":
            raise ValueError(f"Expected a CPU tensor, got device {inputs.device}")
        batch = inputs.shape[0]
        threads = torch.get_num_threads()
        if self.parallel_windows and batch > 1 and threads > 1:
            outs = self._windows_in_parallel(inputs, min(batch, threads), threads)
        elif self.lanes and threads == 2:
            if self._lanes is None:
                self._lanes = _Lanes()
            torch.set_num_threads(1)
            try:
                with torch.no_grad():
                    outs = [self._window(inputs[b], 0, self._lanes) for b in range(batch)]
            finally:
                torch.set_num_threads(threads)
        else:
            with torch.no_grad():
                outs = [self._window(inputs[b], 0) for b in range(batch)]
        logits = torch.stack(outs, 0)  # [B, T, 2]
        return logits[:, :, 0:1].contiguous(), logits[:, :, 1:2].contiguous()

    forward = __call__

    def _windows_in_parallel(self, inputs: torch.Tensor, workers: int, threads: int) -> List[torch.Tensor]:
        """One window per thread, each op single-threaded: many of the ops are
        memory-bound or small and scale poorly over 2 threads inside one window."""
        if self._pool is None or self._pool_workers < workers:
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="cpu_fast")
            self._pool_workers = workers

        def run(slot: int) -> List[torch.Tensor]:
            torch.set_num_threads(1)  # this thread's OpenMP and MKL settings
            with torch.no_grad():
                return [self._window(inputs[b], slot) for b in range(slot, inputs.shape[0], workers)]

        try:
            parts = list(self._pool.map(run, range(workers)))
        finally:
            torch.set_num_threads(threads)
        outs: List[torch.Tensor] = [torch.empty(0)] * inputs.shape[0]
        for slot, part in enumerate(parts):
            outs[slot::workers] = part
        return outs

    def _window(self, frames: torch.Tensor, slot: int, lanes: Optional["_Lanes"] = None) -> torch.Tensor:
        """One window ``[T, 27, 48, 3]`` -> logits ``[T, 2]``.

        With ``lanes``, each stage's independent pieces (branches, Winograd
        chunks) are split between two threads of one core each."""
        t = frames.shape[0]
        p = self._plan(t, slot)
        parts = 2 if lanes is not None else 1

        def run(jobs) -> None:
            if lanes is None:
                for job in jobs:
                    job()
            else:
                lanes.run(jobs[0::2], jobs[1::2])

        def by_branch(work):
            # branches 0, 1 in one lane and 2, 3 in the other: neighbouring channels
            return [lambda: (work(0), work(1)), lambda: (work(2), work(3))] if lanes is not None else \
                [lambda b=b: work(b) for b in range(4)]

        def by_chunk(wino, xp, out):
            return [lambda i=i: wino(xp, out, slot + i, i, parts) for i in range(parts)]

        pooled_means: List[torch.Tensor] = []
        x = frames.float().permute(0, 3, 1, 2)  # NCHW view, channels-last memory
        for i, (stack, s) in enumerate(zip(self.stacks, p.stacks)):
            sh, sw, f = stack["h"], stack["w"], stack["out_channels"] // 4
            wino1, wino2 = stack["wino1"], stack["wino2"]
            temporal1, temporal2 = stack["temporal1"], stack["temporal2"]
            # Block 1's ReLU is fused with the copy into block 2's padded input;
            # that interior is also the stack's shortcut.
            shortcut = wino2.interior(s["xp2"], t)
            if wino1 is None:
                def block1(b: int) -> None:
                    mid = F.conv2d(x, self.first_w[b], None, 1, 1).permute(0, 2, 3, 1).reshape(t, sh * sw, -1)
                    y = temporal1.branch(b, mid).view(t, sh, sw, f)
                    torch.clamp_min(y, 0, out=shortcut[..., b * f:(b + 1) * f])
            else:
                run(by_chunk(wino1, s["xp1"], s["mid"]))
                mids = wino1.branches(s["mid"], t)

                def block1(b: int) -> None:
                    y = temporal1.branch(b, mids[b]).view(t, wino1.rows_per_frame, sw, f)[:, :sh]
                    torch.clamp_min(y, 0, out=shortcut[..., b * f:(b + 1) * f])
            run(by_branch(block1))
            run(by_chunk(wino2, s["xp2"], s["mid"]))
            mids2 = wino2.branches(s["mid"], t)
            if i + 1 < len(self.stacks):
                target = self.stacks[i + 1]["wino1"].interior(p.stacks[i + 1]["xp1"], t)
            else:
                target = p.head_in[:, 256:].view(t, sh // 2, sw // 2, -1)

            def block2(b: int) -> None:
                # relu(block 2) + shortcut, 2x2 average pooling into the next stack's input
                y = temporal2.branch(b, mids2[b]).view(t, wino2.rows_per_frame, sw, f)[:, :sh]
                y.clamp_min_(0).add_(shortcut[..., b * f:(b + 1) * f])
                _pool_into(y, target[..., b * f:(b + 1) * f])
            run(by_branch(block2))
            pooled_means.append(target.mean(dim=(1, 2)))

        m = self.model
        # similarity features: the eager model's own (small) layers and math
        features = torch.cat(pooled_means, 1)
        sim = F.normalize(m.frame_sim_layer.projection(features), p=2.0, dim=1)
        sim = F.relu(m.frame_sim_layer.fc(neighbour_similarities(sim[None], m.frame_sim_layer.lookup_window)))[0]
        hist = m.color_hist_layer(frames[None])[0]
        p.head_in[:, 0:128].copy_(hist)
        p.head_in[:, 128:256].copy_(sim)
        rows = [slice(0, t // 2), slice(t // 2, t)] if lanes is not None else [slice(0, t)]

        def dense(r: slice) -> None:
            torch.addmm(self.fc1_b, p.head_in[r], self.fc1_w, out=p.hidden[r])
            p.hidden[r].clamp_min_(0)
        run([lambda r=r: dense(r) for r in rows])
        return torch.addmm(self.cls_b, p.hidden, self.cls_w)


_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> bool:
    """Make glibc reuse freed blocks of up to 32 MiB instead of unmapping them.

    oneDNN allocates its convolution outputs (up to ~17 MB here) on every call.
    With glibc's defaults such blocks are often mmap'ed and unmapped each time,
    so every call faults ~30k pages back in (~90 ms of a ~600 ms window on one
    core). Fixing the mmap threshold at its maximum and not trimming the heap
    keeps them in the process. Process-wide, and it only changes where freed
    memory waits: the process keeps its peak heap. Returns False where this
    is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):
        return False


def build_cpu_model(model: TransNetV2, tune_malloc: bool = True) -> CpuTransNetV2:
    """A CPU inference callable computing ``model``'s forward, from its weights.

    ``tune_malloc`` calls ``keep_freed_memory()`` (process-wide; see there).
    """
    if any(prm.device.type != "cpu" for prm in model.parameters()):
        raise ValueError("build_cpu_model needs the model's weights on the CPU")
    if tune_malloc:
        keep_freed_memory()
    return CpuTransNetV2(model)
