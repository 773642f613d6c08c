"""The executor seam: what runs a run's videos, given the driver to report to.

An executor gets the jobs to analyse (shots/plan.py made them) and reports
through ``RunEvents``: it never prints or writes a result itself, the driver
(shots/driver.py) does, so progress lines and result files stay the same
whatever ran the videos. Today: ``local.LocalExecutor`` (decoder processes
and one inference thread on this machine). A cluster executor is another.
"""
from abc import ABC, abstractmethod
from typing import List, Protocol

from shots.video_job import VideoJob, VideoPrediction


class SetupFailed(Exception):
    """Nothing can be analysed (no usable model). The message is one line."""


class RunEvents(Protocol):
    def started(self, job: VideoJob) -> None:
        """Its decoding starts (said once however often it is called)."""

    def frames(self, job: VideoJob, done: int, total: int) -> None:
        """Frames predicted so far, of about ``total``."""

    def finished(self, job: VideoJob, prediction: VideoPrediction) -> None:
        """Every frame predicted: the driver writes its results."""

    def failed(self, job: VideoJob, cause: str) -> None:
        """It cannot be analysed; ``cause`` is one line."""

    def warning(self, text: str) -> None: ...

    def info(self, text: str) -> None: ...

    def device(self, device: str, why: str) -> None: ...


class Executor(ABC):
    @abstractmethod
    def prepare(self, events: RunEvents) -> None:
        """The quick checks before any decoding (weights readable, device
        chosen); raises SetupFailed."""

    @abstractmethod
    def run(self, jobs: List[VideoJob], events: RunEvents) -> None:
        """Analyse every job: each ends in ``events.finished`` or
        ``events.failed``, unless SetupFailed is raised (the model could not
        be set up: the remaining jobs are not analysed)."""

    def close(self) -> None:
        """Free what the run held beyond its videos (the GPU's lock), after
        ``run`` or a SetupFailed: the driver calls it at the end of every run,
        and an executor may have closed itself already (it must not mind)."""
