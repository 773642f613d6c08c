"""The Ray executor (``executor: ray``): decoding tasks on the cluster's CPU
workers, the model in actors (one per GPU, or one per node on the CPU), and
this process, the driver, between them.

The driver plans and reads the videos with the local engine's own scheduler
and windowing (scheduler.py, video_job.py: the same windows, so the same
probabilities) and its failure policy (executors/local.py), so a bad video
fails alone with the same one-line cause. Only the places differ: frames
come from Ray tasks (ray_source.py), batches go to actors (ray_feed.py).
Everything the run started on the cluster ends with it: tasks cancelled,
actors killed, a local instance shut down.
"""
import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from shots.config import AUTO, Config
from shots.executors import Executor, RunEvents
from shots.executors import ray_cluster, ray_tasks
from shots.executors.local import _Run
from shots.executors.ray_feed import ModelPool, RayModelFeed
from shots.executors.ray_model import ModelActor
from shots.executors.ray_source import RayFrameSource
from shots.frames.ffmpeg_source import RING_FRAMES
from shots.scheduler import READAHEAD_FRAMES_PER_DECODER
from shots.video_job import VideoJob

CHECK_TIMEOUT_S = 120  # a node that cannot even look at the files within this is left to fail them
SHARED_FS = "every node must see the videos at the same path (a shared file system)"


class RayExecutor(Executor):
    def __init__(self, config: Config, weights_path: Path):
        self.config = config
        self.weights_path = weights_path
        self.cluster: Optional[ray_cluster.Cluster] = None
        self.actors: list = []
        self.loading: dict = {}  # load() of each actor, asked in prepare
        self.actor_cpus = 0.0
        self.predictor: Optional[ModelPool] = None

    # -- set-up -----------------------------------------------------------------------
    def prepare(self, events: RunEvents) -> None:
        if self.cluster is not None:
            return
        try:
            with signals_kept():
                self._prepare(events)
        except BaseException:
            self.close()
            raise

    def _prepare(self, events: RunEvents) -> None:
        self.cluster = ray_cluster.connect(self.config.ray_address)
        self._start_actors()
        # Each actor loads its model at once, while this process checks the
        # videos and the decoding starts: nothing waits for the actor's torch
        # import and weights check (2 s on 2 cores, more on a GPU machine), and
        # a weights error comes back with the load's answer, as the same
        # one-line SetupFailed (RayModelFeed -> _Run._loaded).
        self.loading = {actor.load.remote(): actor for actor in self.actors}
        events.info(f"{self.cluster.describe()}; {len(self.actors)} model actor(s), "
                    f"{self.decode_slots} decoding task(s) at once")

    def _start_actors(self) -> None:
        c = self.config
        options = dict(device=c.device, mixed_precision=c.mixed_precision, torchscript=c.torchscript,
                       torchscript_auto_fallback=c.torchscript_auto_fallback, batch_size=c.batch_size,
                       cpu_threads=c.cpu_threads, cpu_fast=c.cpu_fast)
        weights = os.path.abspath(self.weights_path)  # the workers' current folder is not ours
        if self.cluster.gpus and c.device != "cpu":
            # One per GPU; Ray shows each its own.
            self.actors = [ModelActor.options(num_gpus=1, num_cpus=1).remote(weights, options, None)
                           for _ in range(self.cluster.gpus)]
            self.actor_cpus = float(len(self.actors))
            return
        # No GPU: one per node of 2 CPUs or more (a smaller node decodes), with
        # the node's CPUs but one for its decoding (as the local engine: one
        # decoder beside a CPU model), and as many threads as locally.
        threads = None if c.cpu_threads != AUTO else "all"
        nodes = ([n for n in self.cluster.nodes if n.cpus >= 2]
                 or sorted(self.cluster.nodes, key=lambda n: -n.cpus)[:1])
        for node in nodes:
            cpus = node.cpus - 1 if node.cpus > 1 else 0
            where = NodeAffinitySchedulingStrategy(node.node_id, soft=True)
            self.actors.append(ModelActor.options(num_cpus=cpus, scheduling_strategy=where).remote(
                weights, options, threads))
            self.actor_cpus += cpus

    @property
    def decode_slots(self) -> int:
        return max(1, int(self.cluster.cpus - self.actor_cpus))

    def make_source(self, decoders: int, config: Config) -> RayFrameSource:
        threads = 1 if config.decoder_threads == AUTO else int(config.decoder_threads)
        return RayFrameSource(decoders, RING_FRAMES // ray_tasks.CHUNK_FRAMES, threads,
                              config.segment_seconds, config.segment_frames, probe_here=self.cluster.started_here)

    # -- the run --------------------------------------------------------------------------
    def run(self, jobs: List[VideoJob], events: RunEvents) -> None:
        try:
            if self.cluster is None:
                self.prepare(events)
            with signals_kept():
                jobs = self._readable_everywhere(jobs, events)
                self.predictor = ModelPool(self.actors, events, self.loading)
                _RayRun(self, jobs, events).go()
        finally:
            self.close()

    def _readable_everywhere(self, jobs: List[VideoJob], events: RunEvents) -> List[VideoJob]:
        """Each node looks at every video (one small task per node): a video
        that some node sees otherwise than this process fails at once. A local
        instance started by this run is this machine, its workers this user:
        they see what this process sees, and nothing waits for them to say so
        (0.1-1.5 s of the start on 2 cores, a worker process started for it)."""
        if self.cluster.started_here:
            return jobs
        nodes = ray_cluster.alive_nodes()
        if not jobs or not nodes:
            return jobs
        paths = [os.path.abspath(j.path) for j in jobs]  # as the decoding tasks get them
        refs = [ray_tasks.check_paths.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n.node_id, False))
                .remote(paths) for n in nodes]
        seen = []
        for node, ref in zip(nodes, refs):
            try:
                seen.append((node, ray.get(ref, timeout=CHECK_TIMEOUT_S)))
            except ray.exceptions.RayError as exc:  # a timeout too
                events.warning(f"node {node.address} did not say whether it can read the videos "
                               f"({type(exc).__name__}): it may fail some")
        keep = []
        for i, job in enumerate(jobs):
            mine = ray_tasks.signature(paths[i])
            other = [(n, s[i]) for n, s in seen if s[i] != mine]
            if not other:
                keep.append(job)
                continue
            node, theirs = other[0]
            what = theirs[len("error: "):] if theirs.startswith("error: ") else f"a different file there ({theirs})"
            events.failed(job, f"cannot be read on node {node.address}: {what}; {SHARED_FS}")
        return keep

    def close(self) -> None:
        """End every actor and task of the run, and leave the cluster."""
        if ray.is_initialized():
            for actor in self.actors:
                try:
                    ray.kill(actor, no_restart=True)
                except Exception:
                    pass
        self.actors = []
        ray_cluster.disconnect(self.cluster)
        self.cluster = None


@contextmanager
def signals_kept():
    """A SIGTERM or SIGINT that arrives while Ray waits comes out of Ray as
    SystemExit(1): it leaves as the signal's own exit (128 + signal, or
    KeyboardInterrupt), as with the local executor."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def note(signum, frame):
        received.append(signum)
        handler = previous[signum]
        if callable(handler):
            handler(signum, frame)
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    for s in previous:
        signal.signal(s, note)
    try:
        yield
    except (SystemExit, KeyboardInterrupt):
        if not received:
            raise
        if received[0] == signal.SIGINT and previous[signal.SIGINT] is signal.default_int_handler:
            raise KeyboardInterrupt from None
        raise SystemExit(128 + received[0]) from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class _RayRun(_Run):
    """The local engine's loop and failure policy, with Ray's frame source and model actors."""

    def __init__(self, executor: RayExecutor, jobs: List[VideoJob], events: RunEvents):
        # Not _Run.__init__: it builds local decoder processes and an inference thread.
        c = executor.config
        self.config, self.predictor, self.events = c, executor.predictor, events
        self.make_source = executor.make_source
        self.jobs = jobs
        self.unfinished = len(jobs)
        self.setup_error: Optional[str] = None
        self.decoders = executor.decode_slots
        self.readahead = (READAHEAD_FRAMES_PER_DECODER * self.decoders if c.readahead_frames == AUTO
                          else c.readahead_frames)
        self.feed = RayModelFeed(self.predictor, self._loaded, self._predicted, self._batch_failed)
        self.scheduler = None

    def _loaded(self, error: Optional[BaseException]) -> None:
        # The decoding tasks at once are the cluster's, whatever num_workers says.
        if error is not None:
            super()._loaded(error)
