"""The model's batches on the chosen device: its set-up (weights, device,
precision, TorchScript, warm-up) and the per-batch fallbacks (TorchScript or
Winograd kernels -> eager, CUDA out of memory -> smaller batches, any other
CUDA failure -> ``DeviceFailure`` for the caller to redo the videos on the CPU).

Only this process ever touches the GPU: decoders are separate ffmpeg processes.
"""
import time
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from shots.model.backend import KIND_LABELS, Backend
from shots.model.device import DeviceChoice, auto_batch, cuda_still_works, find_device, precision_for
from shots.model.failures import first_line, is_cuda_error, is_oom
from shots.model.network import TransNetV2
from shots.model.weights import WeightsError, apply_weights, read_weights
from shots.windows import WINDOW


class SetupError(Exception):
    """The model cannot be run as the configuration asks (nothing can run)."""


class DeviceFailure(Exception):
    """The accelerator failed on a batch in a way retries on it can't fix."""


class Predictor:
    """Runs batches on the chosen device, with the fallbacks of the engine's contract.

    ``log`` is the run's reporter: its ``warning``, ``device`` and ``info``
    lines are the progress lines of the set-up and of every fallback."""

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
        self.report = log
        self.primary: Optional[Backend] = None
        self._cpu: Optional[Backend] = None
        self.load_seconds = 0.0
        self._choice: Optional[DeviceChoice] = None
        self._state: Optional[dict] = None  # the weights, kept for a CPU stand-in built later
        self._checked: Optional[torch.nn.Module] = None  # the model prepare() loaded them into
        self._prepare_seconds = 0.0

    @property
    def batch_size(self) -> int:
        """Windows per batch on the primary device (what the engine gathers)."""
        return self.primary.batch if self.primary is not None else 1

    @property
    def device_type(self) -> str:
        """Where the batches run now: "cpu" or "cuda" (after ``load``)."""
        if self.primary is None:
            raise RuntimeError("the model is not loaded yet: call load() first")
        return self.primary.device.type

    # -- set-up ------------------------------------------------------------------
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
        choice = find_device(self.requested_device)
        if choice.warning:
            self.report.warning(choice.warning)
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
            except WeightsError:
                raise
            except Exception as exc:  # whatever CUDA raised (a RuntimeError, or an
                # AssertionError from a torch built without CUDA), the CPU can still run
                self.report.warning(f"loading the model on {device} failed ({first_line(exc)}): using the CPU")
                device = torch.device("cpu")
                choice = DeviceChoice("cpu", "fallback after a CUDA error while loading")
                cuda_loading_failed = True
        if device.type == "cpu":
            # The CPU stands in for a GPU that was asked for, or that failed to load.
            stand_in = self.requested_device not in ("cpu", "auto") or cuda_loading_failed
            self.primary = self._make_backend(device, stand_in=stand_in)
            self._cpu = self.primary
        self.report.device(choice.device, choice.why)
        if self.want_torchscript:
            self._trace(self.primary)
        self._warm_up(self.primary)
        self.load_seconds = time.perf_counter() - started
        self.report.info(
            f"model ready on {self.primary.device} in {self.load_seconds:.1f} s: precision "
            f"{self.primary.precision}, batch {self.batch_size}, "
            f"{KIND_LABELS[self.primary.kind]}, {torch.get_num_threads()} CPU threads")

    def _make_backend(self, device: torch.device, stand_in: bool = False) -> Backend:
        model, self._checked = self._checked, None
        if model is None:
            model = TransNetV2()
            apply_weights(model, self._state, self.weights_path)
        model.eval()
        model = model.to(device)
        precision = precision_for(device, self.mixed_precision)
        if self.mixed_precision and precision == "fp32":
            self.report.warning("mixed precision asked for, but this CPU has no native bf16 support: running fp32")
        fast = None
        if device.type == "cpu" and precision == "fp32" and self.cpu_fast and not self.want_torchscript:
            # Same function, ~2x fewer operations (Winograd); see cpu_fast.py.
            from shots.model.cpu_fast import build_cpu_model
            fast = build_cpu_model(model)
        backend = Backend(model, device, precision, fast)
        # A batch size asked for is the chosen device's; a CPU standing in for a
        # failed GPU keeps its own (a GPU-sized batch would need gigabytes here).
        if self.requested_batch != "auto" and not stand_in:
            backend.batch = int(self.requested_batch)
        else:
            backend.batch = auto_batch(device, precision)
        return backend

    def _trace(self, backend: Backend) -> None:
        try:
            backend.trace(backend.batch)
        except Exception as exc:
            if not self.ts_fallback:
                raise SetupError(f"TorchScript tracing failed ({first_line(exc)}) and "
                                 f"torchscript_auto_fallback is off") from None
            self.report.warning(f"TorchScript tracing failed ({first_line(exc)}): using the eager model")
            backend.use_eager()

    def _warm_up(self, backend: Backend) -> None:
        dummy = np.zeros((min(backend.batch, 2), WINDOW, 27, 48, 3), dtype=np.uint8)
        try:
            self._run_on(backend, dummy)
        except DeviceFailure as exc:
            self.report.warning(f"warm-up on {backend.device} failed ({exc}): using the CPU")
            self.use_cpu("fallback after a CUDA error in the warm-up")

    def use_cpu(self, why: str) -> None:
        """The GPU is out for the rest of the run: the CPU becomes the primary device."""
        self.primary = self._cpu_backend()
        self.report.device("cpu", why)

    def _cpu_backend(self) -> Backend:
        if self._cpu is None:
            self._cpu = self._make_backend(torch.device("cpu"), stand_in=True)
        return self._cpu

    # -- running -----------------------------------------------------------------
    def run(self, windows: np.ndarray, on_cpu: bool = False) -> Tuple[np.ndarray, Backend]:
        """Probabilities ``[B, 2, 50]`` and the backend that made them.

        Raises DeviceFailure when the accelerator failed; the caller redoes the
        videos concerned on the CPU (``on_cpu=True``).
        """
        backend = self._cpu_backend() if on_cpu else self.primary
        return self._run_on(backend, windows), backend

    def _run_on(self, backend: Backend, windows: np.ndarray) -> np.ndarray:
        while True:
            try:
                step = backend.batch
                parts = [backend(windows[i:i + step]) for i in range(0, windows.shape[0], step)]
                return np.concatenate(parts) if len(parts) > 1 else parts[0]
            except Exception as exc:
                self._fall_back(backend, exc)

    def _fall_back(self, backend: Backend, exc: Exception) -> None:
        """Make ``backend`` ready to retry the batch that raised ``exc``, or raise."""
        if backend.device.type == "cuda" and is_oom(exc):
            torch.cuda.empty_cache()
            if backend.batch > 1:
                backend.batch //= 2
                self.report.warning(f"CUDA out of memory: batch size halved to {backend.batch}, retrying")
                return
            raise DeviceFailure("CUDA out of memory even with one window per batch") from exc
        if backend.torchscript and self.ts_fallback and not is_cuda_error(exc):
            self.report.warning(f"TorchScript model failed ({first_line(exc)}): using the eager model")
            backend.use_eager()
            return
        if backend.kind == "winograd":
            self.report.warning(f"the fast CPU model failed ({first_line(exc)}): using the eager model")
            backend.use_eager()
            return
        if backend.device.type == "cuda":
            raise DeviceFailure(first_line(exc)) from exc
        raise exc

    def gpu_healthy(self) -> bool:
        """After a CUDA failure: can the device still run anything?"""
        return self.primary is not None and cuda_still_works(self.primary.device)
