"""The two seams of a STEP3 run, each given a second implementation:

- a frame source that decodes in the scheduler's own thread (no processes,
  no shared memory): the scheduler and the executor must give the same
  results as with the ffmpeg decoder processes, and fail a bad file the same;
- an executor that analyses nothing itself but replays the events of another
  run: the driver alone prints the lines and writes the files, identical to
  the run it replays.

Real clips, the real model and weights, the real driver."""
import io
import time
from collections import deque

import pytest

from conftest import copy_to, read_csv_rows
from shots.config import Config, load_config
from shots.driver import Driver
from shots.executors import Executor
from shots.executors.local import LocalExecutor
from shots.frames.ffmpeg_reader import FrameReader
from shots.frames.messages import FramesReady, MemoryChunk, TaskDone, TaskFailed
from shots.frames.probe import DecodeError
from shots.frames.segments import decode_seconds, plan_video
from shots.frames.source import FrameSource
from shots.report import Reporter
from stepkit.result_check import load_result


class InlineFrameSource(FrameSource):
    """Decodes one task at a time, within ``poll``, into plain arrays."""

    def __init__(self):
        self.tasks = deque()
        self.cancelled = set()
        self.decoded = []  # task ids, in the order they were decoded

    @property
    def capacity(self) -> int:
        return 1

    def plan(self, path, split):
        return plan_video(path)  # never split: one task a video

    def cost(self, info, frames):
        return decode_seconds(info, frames)

    def idle(self, limit):
        return 0 if self.tasks else min(1, limit)

    def submit(self, task):
        self.tasks.append(task)

    def cancel(self, task_id):
        self.cancelled.add(task_id)

    def poll(self, timeout):
        if not self.tasks:
            time.sleep(min(timeout, 0.01))
            return []
        task = self.tasks.popleft()
        if task.task_id in self.cancelled:
            return [TaskFailed(task.task_id, "cancelled", cancelled=True)]
        self.decoded.append(task.task_id)
        seg = task.segment
        reader = FrameReader(task.info, chunk=128, start=seg.start, max_frames=seg.frames,
                             absolute=seg.frames is not None)
        out = []
        while (chunk := reader.read()) is not None:
            out.append(FramesReady(task.task_id, MemoryChunk(chunk)))
        try:
            out.append(TaskDone(task.task_id, reader.finish()))
        except DecodeError as exc:
            out.append(TaskFailed(task.task_id, str(exc)))
        return out

    def close(self):
        self.tasks.clear()


def run(folder, logs, executor=None, *args):
    out = io.StringIO()
    config = load_config(["--input-dir", str(folder), "--log-dir", str(logs), "--device", "cpu", *args],
                         environ={})
    driver = Driver(config, Reporter(stream=out), executor(config) if executor else None)
    return driver.run(), out.getvalue().splitlines()


def test_another_frame_source_gives_the_same_results(tmp_path, media, weights_path):
    for folder in ("ffmpeg", "inline"):
        copy_to(media["cuts"], tmp_path / folder, "cuts.mp4")
        copy_to(media["short"], tmp_path / folder, "short.mp4")
        (tmp_path / folder / "broken.mp4").write_bytes(b"\x00" * 5000)
    sources = []

    def inline(config):
        def make(decoders, _config):
            assert decoders == 1  # num_workers 1 beside a CPU model
            sources.append(InlineFrameSource())
            return sources[-1]
        return LocalExecutor(config, weights_path, make_source=make)
    code_a, lines_a = run(tmp_path / "ffmpeg", tmp_path / "logs")
    code_b, lines_b = run(tmp_path / "inline", tmp_path / "logs", inline)
    assert code_a == code_b == 1, lines_b
    assert len(sources) == 1 and len(sources[0].decoded) == 2  # the broken file never reaches a decoder
    for lines in (lines_a, lines_b):
        assert "SUMMARY: 2/3 succeeded, 1 failed, 0 skipped" in lines
        assert [ln for ln in lines if ln.startswith("FAILED:")][0].startswith("FAILED: 1/3: broken.mp4: ")
    for stem in ("cuts", "short"):
        a, b = (load_result(tmp_path / f / f"{stem}.scenes.json") for f in ("ffmpeg", "inline"))
        assert a["predictions"] == b["predictions"]
        assert (tmp_path / "ffmpeg" / f"{stem}.csv").read_bytes() == (tmp_path / "inline" / f"{stem}.csv").read_bytes()
    starts = [int(r[3]) - 1 for r in read_csv_rows(tmp_path / "inline" / "cuts.csv")[1:]]
    assert len(starts) == len(media["cut_starts"]) + 1
    assert all(abs(got - want) <= 1 for got, want in zip(starts[1:], media["cut_starts"]))


class ReplayExecutor(Executor):
    """Plays back what a local run reported, from another thread's record:
    a stand-in for an executor whose work happens elsewhere."""

    def __init__(self, recorded):
        self.recorded = recorded

    def prepare(self, events):
        pass

    def run(self, jobs, events):
        by_name = {job.name: job for job in jobs}
        for kind, name, payload in self.recorded:
            getattr(events, kind)(by_name[name], *payload)


class Recorder:
    """The driver's events, recorded on their way through."""

    def __init__(self, driver):
        self.driver, self.events = driver, []

    def __getattr__(self, name):
        forward = getattr(self.driver, name)
        if name not in ("started", "frames", "finished", "failed"):
            return forward

        def record(job, *payload):
            self.events.append((name, job.name, payload))
            return forward(job, *payload)
        return record


def test_the_driver_alone_prints_and_writes_whatever_executor_ran_the_videos(tmp_path, media, weights_path):
    for folder in ("local", "replay"):
        copy_to(media["cuts"], tmp_path / folder, "cuts.mp4")
        (tmp_path / folder / "empty.mp4").write_bytes(b"")
    recorders = []

    class RecordingLocal(LocalExecutor):
        def run(self, jobs, events):
            recorders.append(Recorder(events))
            super().run(jobs, recorders[-1])
    code_a, lines_a = run(tmp_path / "local", tmp_path / "logs",
                          lambda config: RecordingLocal(config, weights_path))
    code_b, lines_b = run(tmp_path / "replay", tmp_path / "logs", lambda config: ReplayExecutor(recorders[0].events))
    assert code_a == code_b == 1
    kinds = [kind for kind, _, _ in recorders[0].events]
    assert kinds.count("finished") == 1 and kinds.count("failed") == 1
    # The same progress lines, but the INFO and DEVICE lines of the model, and
    # the FRAMES lines in between, which the emitter spaces out in time.
    keep = ("TOTAL", "PROCESSING", "SUCCESS", "FAILED", "SKIPPED", "SUMMARY")
    assert [ln for ln in lines_a if ln.startswith(keep)] == [ln for ln in lines_b if ln.startswith(keep)]
    last_frames = [ln for ln in lines_b if ln.startswith("FRAMES:")][-1]
    assert last_frames == [ln for ln in lines_a if ln.startswith("FRAMES:")][-1] == "FRAMES: 1/2: 375/375"
    assert (tmp_path / "local" / "cuts.csv").read_bytes() == (tmp_path / "replay" / "cuts.csv").read_bytes()
    a, b = (load_result(tmp_path / f / "cuts.scenes.json") for f in ("local", "replay"))
    for doc in (a, b):
        doc.pop("timings")
        doc["video"].pop("identity")  # the copies' own modification times
    assert a == b


@pytest.mark.parametrize("setup_fails", [True, False], ids=["in-prepare", "in-run"])
def test_an_executor_that_cannot_set_up_is_one_error_and_exit_2(tmp_path, media, setup_fails):
    from shots.executors import SetupFailed

    closed = []

    class Refusing(Executor):
        def prepare(self, events):
            if setup_fails:
                raise SetupFailed("no model here")

        def run(self, jobs, events):
            events.started(jobs[0])
            raise SetupFailed("no model here")

        def close(self):
            closed.append(True)
    copy_to(media["short"], tmp_path / "p", "a.mp4")
    copy_to(media["short"], tmp_path / "p", "b.mp4")
    code, lines = run(tmp_path / "p", tmp_path / "logs", lambda config: Refusing())
    assert code == 2
    assert [ln for ln in lines if ln.startswith("ERROR:")] == ["ERROR: no model here"]
    assert lines[-1] == "SUMMARY: 0/2 succeeded, 2 failed, 0 skipped"
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["a.mp4", "b.mp4"]
    assert closed == [True]  # what it held (a GPU's lock) is freed however the run ends


def test_videos_selects_a_subset_by_path_relative_to_the_input_folder(tmp_path):
    from shots import plan
    for name in ("a.mp4", "sub/b,c.mp4", "sub/d.mov"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    chosen = plan.plan_jobs(Config(input_dir=str(tmp_path), videos=["./sub/d.mov", "sub\\b,c.mp4"]), tmp_path)
    assert [(j.index, j.name) for j in chosen] == [(1, "sub/b,c.mp4"), (2, "sub/d.mov")]
    with pytest.raises(plan.SelectionError, match="'sub/x.mp4' is not a video of the input folder"):
        plan.plan_jobs(Config(input_dir=str(tmp_path), videos=["sub/x.mp4"]), tmp_path)
    with pytest.raises(plan.SelectionError, match="'../a.mp4'"):
        plan.plan_jobs(Config(input_dir=str(tmp_path / "sub"), videos=["../a.mp4"]), tmp_path / "sub")
