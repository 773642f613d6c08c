"""Telling a failure of the model apart (out of memory, another CUDA error) and
saying it in one line (a progress line holds one event)."""
import torch


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def is_cuda_error(exc: BaseException) -> bool:
    text = str(exc)
    return "CUDA" in text or "cuDNN" in text or "CUBLAS" in text


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
