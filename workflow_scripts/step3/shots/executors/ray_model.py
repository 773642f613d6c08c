"""The model on the cluster: one actor per GPU (or per node, on the CPU, when
the cluster has no GPU), each a ``Predictor`` (model/predictor.py) with its
set-up and per-batch fallbacks, running the batches the driver sends.

Ray restarts an actor whose process dies and retries the batches it had
(``max_restarts``, ``max_task_retries``); the restarted actor loads the model
again before its first batch. The lines the predictor says (DEVICE, INFO,
WARNING) come back with each answer for the driver to print.
"""
import os
import time
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import ray

RESTARTS = 3


class _Lines:
    """The predictor's ``log``: its lines kept for the driver."""

    def __init__(self):
        self.lines: List[Tuple[str, tuple]] = []

    def warning(self, text: str) -> None:
        self.lines.append(("warning", (text,)))

    def info(self, text: str) -> None:
        self.lines.append(("info", (text,)))

    def device(self, device: str, why: str) -> None:
        self.lines.append(("device", (device, why)))

    def take(self) -> List[Tuple[str, tuple]]:
        out, self.lines = self.lines, []
        return out


@ray.remote(max_restarts=RESTARTS, max_task_retries=RESTARTS)
class ModelActor:
    def __init__(self, weights_path: str, options: dict, cpu_threads: Optional[str]):
        import torch
        from shots.model.predictor import Predictor
        if cpu_threads == "all":
            # Ray limits a worker to its reserved CPUs' threads; a CPU model gets
            # the threads the local engine gives it: every core of its machine.
            from shots.frames.ffmpeg_source import cpu_count
            torch.set_num_threads(cpu_count())
        self.log = _Lines()
        o = options
        device = o["device"]
        if device.startswith("cuda:"):
            device = "cuda"  # Ray shows this actor its own GPU only, as cuda:0
        self.predictor = Predictor(Path(weights_path), device, o["mixed_precision"], o["torchscript"],
                                   o["torchscript_auto_fallback"], o["batch_size"], o["cpu_threads"], self.log,
                                   o["cpu_fast"])
        self.loaded = False
        self.restarted = ray.get_runtime_context().was_current_actor_reconstructed

    def where(self) -> str:
        return f"{ray.util.get_node_ip_address()} pid {os.getpid()}"

    def load(self):
        """(None, batch size, device type, load seconds, lines), or (error kind, type name, message):
        a weights error is kind "setup", as any error that leaves no model to run."""
        try:
            self._load()
        except Exception as exc:
            return _describe(exc)
        p = self.predictor
        return None, p.batch_size, p.device_type, p.load_seconds, self.log.take()

    def _load(self) -> None:
        if not self.loaded:
            self.predictor.load()
            self.loaded = True

    def run(self, windows: list, on_cpu: bool):
        """The batch's windows (``[100, 27, 48, 3]`` uint8 each) ->
        (probabilities, (device, precision, implementation), seconds, lines, restarted)
        or (error kind, type name, message)."""
        try:
            if not self.loaded:  # a restarted actor: the model again, its lines said once already
                self._load()
                self.log.take()
            started = time.perf_counter()
            # Stacked here, not in the driver: the driver's one loop serves every
            # decoding task and actor (a 64-window batch: 21 ms of its time
            # stacked and sent, 13 ms sent as the windows).
            probs, backend = self.predictor.run(np.stack(windows), on_cpu=on_cpu)
        except Exception as exc:
            return _describe(exc)
        ran_on = (str(backend.device), backend.precision, backend.kind)
        return probs, ran_on, time.perf_counter() - started, self.log.take(), self.restarted

    def gpu_healthy(self) -> bool:
        return self.predictor.gpu_healthy()

    def use_cpu(self, why: str):
        self.predictor.use_cpu(why)
        return self.log.take()


def _describe(exc: BaseException) -> tuple:
    from shots.model.predictor import DeviceFailure, SetupError
    from shots.model.weights import WeightsError
    kind = ("device" if isinstance(exc, DeviceFailure) else "setup" if isinstance(exc, (SetupError, WeightsError))
            else "other")
    return kind, type(exc).__name__, str(exc)


def rebuild_error(kind: str, type_name: str, message: str) -> BaseException:
    """The actor's exception again, as the local failure policy expects it."""
    from shots.model.predictor import DeviceFailure, SetupError
    if kind == "device":
        return DeviceFailure(message)
    if kind == "setup":
        return SetupError(message)
    return type(type_name, (Exception,), {})(message)
