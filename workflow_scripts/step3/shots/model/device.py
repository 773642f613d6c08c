"""Where the model runs and what that device can take: the device chosen
from the configuration and what torch sees, the precision, the batch that fits,
and whether a GPU that failed still works."""
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from shots.model.failures import first_line

BYTES_PER_WINDOW = {"fp32": 130 << 20, "fp16": 66 << 20, "bf16": 66 << 20}  # measured peak activations
MAX_AUTO_BATCH_GPU = 64


@dataclass
class DeviceChoice:
    device: str
    why: str
    warning: Optional[str] = None


def select_device(request: str, cuda_available: bool, cuda_count: int = 1,
                  cuda_name: Callable[[int], str] = lambda i: "GPU") -> DeviceChoice:
    """Where the model runs, and the sentence that explains it."""
    if request == "cpu":
        return DeviceChoice("cpu", "forced by config")
    if request == "auto":
        if cuda_available:
            return DeviceChoice("cuda:0", f"auto: CUDA available, {cuda_name(0)}")
        return DeviceChoice("cpu", "auto: no CUDA device")
    # "cuda" or "cuda:N"
    index = int(request.split(":", 1)[1]) if ":" in request else 0
    if not cuda_available:
        return DeviceChoice("cpu", "CUDA requested but not available",
                            warning=f"device '{request}' requested but CUDA is not available: using the CPU")
    if index >= cuda_count:
        return DeviceChoice("cpu", f"{request} requested but only {cuda_count} CUDA device(s)",
                            warning=f"device '{request}' does not exist ({cuda_count} CUDA device(s)): using the CPU")
    return DeviceChoice(f"cuda:{index}", f"CUDA requested and available, {cuda_name(index)}")


def find_device(request: str) -> DeviceChoice:
    """``select_device`` with what torch sees here."""
    try:
        cuda_ok = torch.cuda.is_available()
        return select_device(request, cuda_ok, torch.cuda.device_count() if cuda_ok else 0,
                             lambda i: torch.cuda.get_device_name(i))
    except Exception as exc:  # a broken driver can fail the questions themselves
        return DeviceChoice("cpu", "fallback after a CUDA error while looking for a GPU",
                            warning=f"CUDA failed while looking for a GPU ({first_line(exc)}): using the CPU")


def cpu_supports_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def precision_for(device: torch.device, mixed_precision: bool) -> str:
    """fp32, or with mixed precision fp16 on CUDA and bf16 on a CPU with native
    bf16 support (fp32 on a CPU without)."""
    if not mixed_precision:
        return "fp32"
    if device.type == "cuda":
        return "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"


def auto_batch(device: torch.device, precision: str) -> int:
    """Windows per call when the batch size is "auto"."""
    if device.type != "cuda":
        # Measured on 2 cores: one window per call. (The Winograd model gains
        # 6 % with two, one per thread, for 450 MB more memory.)
        return 1
    try:
        free, _total = torch.cuda.mem_get_info(device)
    except RuntimeError:
        return 8  # free memory unknown: a modest batch (an out-of-memory would halve it)
    fit = int(free * 0.6) // BYTES_PER_WINDOW[precision]
    return max(1, min(MAX_AUTO_BATCH_GPU, fit))


def cuda_still_works(device: torch.device) -> bool:
    """After a CUDA failure: can the device still run anything?"""
    if device.type != "cuda":
        return False
    try:
        x = torch.ones(16, device=device)
        float((x * 2).sum().item())
        torch.cuda.synchronize(device)
        return True
    except Exception:
        return False
