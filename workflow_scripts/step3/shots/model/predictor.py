"""The model on its device: selection, loading, precision, TorchScript, and the
per-batch fallbacks (TorchScript -> eager, CUDA out of memory -> smaller
batches, any other CUDA failure -> ``DeviceFailure`` for the caller to redo the
videos on the CPU).

Only this process ever touches the GPU: decoders are separate ffmpeg processes.
"""
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np
import torch

from shots.model.network import TransNetV2
from shots.windows import KEEP_FROM, KEEP_TO, WINDOW

INJECT_ENV = "STEP3_INJECT_CUDA_ERROR"  # test hook: the Nth CUDA batch raises a CUDA error
BYTES_PER_WINDOW = {"fp32": 130 << 20, "fp16": 66 << 20, "bf16": 66 << 20}  # measured peak activations
MAX_AUTO_BATCH_GPU = 64


KIND_LABELS = {"eager": "eager", "torchscript": "TorchScript", "winograd": "Winograd CPU kernels"}


class WeightsError(Exception):
    """The weights file is missing or unusable: nothing can run."""


class SetupError(Exception):
    """The model cannot be run as the configuration asks (nothing can run)."""


class DeviceFailure(Exception):
    """The accelerator failed on a batch in a way retries on it can't fix."""


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


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def cpu_supports_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def read_weights(weights_path: Path) -> dict:
    """The state dict in the weights file, on the CPU; WeightsError if unusable."""
    try:
        state = torch.load(str(weights_path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"weights file not found: {weights_path}") from None
    except Exception as exc:  # torch raises many kinds for a corrupt file
        raise WeightsError(f"weights file {weights_path} is not a readable state dict: "
                           f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not isinstance(state, dict):
        raise WeightsError(f"weights file {weights_path} holds a {type(state).__name__}, not a state dict")
    return state


def apply_weights(model: torch.nn.Module, state: dict, weights_path: Path) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise WeightsError(f"weights file {weights_path} does not fit TransNetV2: {first}") from None


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
        self.calls = 0
        self.batch = 1  # windows per call on this backend (halved on CUDA out of memory)
        self._inject_at = int(os.environ.get(INJECT_ENV, "0") or 0) if device.type == "cuda" else 0
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

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self._inject_at and self.calls == self._inject_at:
            raise RuntimeError(f"CUDA error: injected fault ({INJECT_ENV}={self._inject_at})")
        x = torch.from_numpy(windows)
        if self.device.type == "cuda":
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


class Predictor:
    """Runs batches on the chosen device, with the fallbacks of the engine's contract."""

    def __init__(self, weights_path: Path, device: str, mixed_precision: bool, torchscript: bool,
                 torchscript_auto_fallback: bool, batch_size, cpu_threads, log, cpu_fast: bool = True):
        self.weights_path = Path(weights_path)
        self.requested_device = device
        self.mixed_precision = mixed_precision
        self.want_torchscript = torchscript
        self.ts_fallback = torchscript_auto_fallback
        self.requested_batch = batch_size
        self.cpu_threads = cpu_threads
        self.cpu_fast = cpu_fast
        self.log = log  # a progress.Reporter
        self.primary: Optional[Backend] = None
        self._cpu: Optional[Backend] = None
        self.gpu_usable = False
        self.load_seconds = 0.0
        self._choice: Optional[DeviceChoice] = None
        self._state: Optional[dict] = None  # the weights, kept for a CPU stand-in built later
        self._checked: Optional[torch.nn.Module] = None  # the model prepare() loaded them into
        self._prepare_seconds = 0.0

    @property
    def batch_size(self) -> int:
        """Windows per batch on the primary device (what the engine gathers)."""
        return self.primary.batch if self.primary is not None else 1

    # -- set-up ------------------------------------------------------------------
    def _precision_for(self, device: torch.device) -> str:
        if not self.mixed_precision:
            return "fp32"
        if device.type == "cuda":
            return "fp16"
        if cpu_supports_bf16():
            return "bf16"
        self.log.warning("mixed precision asked for, but this CPU has no native bf16 support: running fp32")
        return "fp32"

    def _make_backend(self, device: torch.device, fallback: bool = False) -> Backend:
        model, self._checked = self._checked, None
        if model is None:
            model = TransNetV2()
            apply_weights(model, self._state, self.weights_path)
        model.eval()
        model = model.to(device)
        precision = self._precision_for(device)
        fast = None
        if device.type == "cpu" and precision == "fp32" and self.cpu_fast and not self.want_torchscript:
            # Same function, ~2x fewer operations (Winograd); see cpu_fast.py.
            from shots.model.cpu_fast import build_cpu_model
            fast = build_cpu_model(model)
        backend = Backend(model, device, precision, fast)
        backend.batch = self._auto_batch(backend, honour_request=not fallback)
        return backend

    def _auto_batch(self, backend: Backend, honour_request: bool = True) -> int:
        # A batch size asked for is the chosen device's; a CPU standing in for a
        # failed GPU keeps its own (a GPU-sized batch would need gigabytes here).
        if self.requested_batch != "auto" and honour_request:
            return int(self.requested_batch)
        if backend.device.type != "cuda":
            # Measured on 2 cores: one window per call. (The Winograd model gains
            # 6 % with two, one per thread, for 450 MB more memory.)
            return 1
        try:
            free, _total = torch.cuda.mem_get_info(backend.device)
        except RuntimeError:
            return 8  # free memory unknown: a modest batch (an out-of-memory would halve it)
        fit = int(free * 0.6) // BYTES_PER_WINDOW[backend.precision]
        return max(1, min(MAX_AUTO_BATCH_GPU, fit))

    def prepare(self) -> str:
        """The quick part of loading: where the model will run (its device type,
        "cuda" or "cpu", returned) and the weights read and checked. Raises
        WeightsError. ``load`` finishes (and may still fall back to the CPU)."""
        if self._choice is not None:
            return self._choice.device.split(":")[0]
        started = time.perf_counter()
        if self.cpu_threads != "auto":
            torch.set_num_threads(int(self.cpu_threads))
        self._state = read_weights(self.weights_path)
        # Do they fit? The model that shows it becomes the first backend's.
        self._checked = TransNetV2()
        apply_weights(self._checked, self._state, self.weights_path)
        try:
            cuda_ok = torch.cuda.is_available()
            choice = select_device(
                self.requested_device, cuda_ok, torch.cuda.device_count() if cuda_ok else 0,
                lambda i: torch.cuda.get_device_name(i))
        except Exception as exc:  # a broken driver can fail the questions themselves
            choice = DeviceChoice("cpu", "fallback after a CUDA error while looking for a GPU",
                                  warning=f"CUDA failed while looking for a GPU ({_first_line(exc)}): using the CPU")
        if choice.warning:
            self.log.warning(choice.warning)
        self._choice = choice
        self._prepare_seconds = time.perf_counter() - started
        return choice.device.split(":")[0]

    def load(self) -> None:
        """Build the model on its device, trace it if asked, warm it up."""
        self.prepare()
        started = time.perf_counter() - self._prepare_seconds
        choice = self._choice
        device = torch.device(choice.device)
        cuda_loading_failed = False
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            try:
                self.primary = self._make_backend(device)
                self.gpu_usable = True
            except WeightsError:
                raise
            except Exception as exc:  # whatever CUDA raised (a RuntimeError, or an
                # AssertionError from a torch built without CUDA), the CPU can still run
                self.log.warning(f"loading the model on {device} failed ({_first_line(exc)}): using the CPU")
                device = torch.device("cpu")
                choice = DeviceChoice("cpu", "fallback after a CUDA error while loading")
                cuda_loading_failed = True
        if device.type == "cpu":
            # The CPU stands in for a GPU that was asked for, or that failed to load.
            stand_in = self.requested_device not in ("cpu", "auto") or cuda_loading_failed
            self.primary = self._make_backend(device, fallback=stand_in)
            self._cpu = self.primary
        self.log.device(choice.device, choice.why)
        if self.want_torchscript:
            self._try_trace(self.primary)
        self._warm_up(self.primary)
        self.load_seconds = time.perf_counter() - started
        self.log.info(
            f"model ready on {self.primary.device} in {self.load_seconds:.1f} s: precision "
            f"{self.primary.precision}, batch {self.batch_size}, "
            f"{KIND_LABELS[self.primary.kind]}, {torch.get_num_threads()} CPU threads")

    def _try_trace(self, backend: Backend) -> None:
        try:
            backend.trace(backend.batch)
        except Exception as exc:
            if not self.ts_fallback:
                raise SetupError(f"TorchScript tracing failed ({_first_line(exc)}) and "
                                 f"torchscript_auto_fallback is off") from None
            self.log.warning(f"TorchScript tracing failed ({_first_line(exc)}): using the eager model")
            backend.use_eager()

    def _warm_up(self, backend: Backend) -> None:
        dummy = np.zeros((min(backend.batch, 2), WINDOW, 27, 48, 3), dtype=np.uint8)
        try:
            self._run_on(backend, dummy)
        except DeviceFailure as exc:
            self.log.warning(f"warm-up on {backend.device} failed ({exc}): using the CPU")
            self.use_cpu("fallback after a CUDA error in the warm-up")

    def use_cpu(self, why: str) -> None:
        """The GPU is out for the rest of the run: the CPU becomes the primary device."""
        self.gpu_usable = False
        self.primary = self.cpu_backend()
        self.log.device("cpu", why)

    def cpu_backend(self) -> Backend:
        if self._cpu is None:
            self._cpu = self._make_backend(torch.device("cpu"), fallback=True)
        return self._cpu

    @property
    def device_label(self) -> str:
        return str(self.primary.device) if self.primary else "none"

    # -- running -----------------------------------------------------------------
    def run(self, windows: np.ndarray, on_cpu: bool = False) -> Tuple[np.ndarray, Backend]:
        """Probabilities ``[B, 2, 50]`` and the backend that made them.

        Raises DeviceFailure when the accelerator failed; the caller redoes the
        videos concerned on the CPU (``on_cpu=True``).
        """
        backend = self.cpu_backend() if on_cpu else self.primary
        return self._run_on(backend, windows), backend

    def _run_on(self, backend: Backend, windows: np.ndarray) -> np.ndarray:
        while True:
            try:
                step = backend.batch
                parts = [backend(windows[i:i + step]) for i in range(0, windows.shape[0], step)]
                return np.concatenate(parts) if len(parts) > 1 else parts[0]
            except Exception as exc:
                if backend.device.type == "cuda" and is_oom(exc):
                    torch.cuda.empty_cache()
                    if backend.batch > 1:
                        backend.batch //= 2
                        self.log.warning(f"CUDA out of memory: batch size halved to {backend.batch}, retrying")
                        continue
                    raise DeviceFailure(f"CUDA out of memory even with one window per batch") from exc
                if backend.torchscript and self.ts_fallback and not _is_cuda_error(exc):
                    self.log.warning(f"TorchScript model failed ({_first_line(exc)}): using the eager model")
                    backend.use_eager()
                    continue
                if backend.kind == "winograd":
                    self.log.warning(f"the fast CPU model failed ({_first_line(exc)}): using the eager model")
                    backend.use_eager()
                    continue
                if backend.device.type == "cuda":
                    raise DeviceFailure(_first_line(exc)) from exc
                raise

    def gpu_healthy(self) -> bool:
        """After a CUDA failure: can the device still run anything?"""
        if self.primary is None or self.primary.device.type != "cuda":
            return False
        try:
            x = torch.ones(16, device=self.primary.device)
            float((x * 2).sum().item())
            torch.cuda.synchronize(self.primary.device)
            return True
        except Exception:
            return False


def _is_cuda_error(exc: BaseException) -> bool:
    text = str(exc)
    return "CUDA" in text or "cuDNN" in text or "CUBLAS" in text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
