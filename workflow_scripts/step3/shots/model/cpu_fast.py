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
from shots.model.winograd import Winograd3x3

DILATIONS = (1, 2, 4, 8)


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
# The tall layout (see winograd.Winograd3x3) for the 27- and 13-row stacks; the 6-row
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
                    entry["wino1"] = Winograd3x3(spatial1, h, w, TILES[i], CHUNKS[i], TALL[i])
                entry["wino2"] = Winograd3x3(spatial2, h, w, TILES[i], CHUNKS[i], TALL[i])
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
        return self._head(frames, p, pooled_means, run, halves=lanes is not None)

    def _head(self, frames: torch.Tensor, p: _Plan, pooled_means: List[torch.Tensor], run,
              halves: bool) -> torch.Tensor:
        """The similarity and colour features and the dense layers, from the
        stacks' pooled means: logits ``[T, 2]``. ``halves``: the first dense
        layer in two halves of the frames, one for each lane of ``run``."""
        t = frames.shape[0]
        m = self.model
        # similarity features: the eager model's own (small) layers and math
        features = torch.cat(pooled_means, 1)
        sim = F.normalize(m.frame_sim_layer.projection(features), p=2.0, dim=1)
        sim = F.relu(m.frame_sim_layer.fc(neighbour_similarities(sim[None], m.frame_sim_layer.lookup_window)))[0]
        hist = m.color_hist_layer(frames[None])[0]
        p.head_in[:, 0:128].copy_(hist)
        p.head_in[:, 128:256].copy_(sim)
        rows = [slice(0, t // 2), slice(t // 2, t)] if halves else [slice(0, t)]

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
