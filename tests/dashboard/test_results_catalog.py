"""The results' states and reviews without a server: a result written in
STEP3's format (stepkit.scene_results) for a generated clip, then changed the
ways a user's folder changes."""
import json
import os
import threading

import pytest
from results_support import make_clip

from dashboard.results import review as reviews
from dashboard.results.catalog import ResultCache, examine
from dashboard.results.library import check_request_path
from dashboard.results.thumbnails import Busy, ThumbnailCache
from dashboard.safe_open import OutsideRoot
from stepkit.scene_results import make_document, result_paths, scene_rows, video_identity, write_results


def write_result(video, frames=50, scenes=((0, 24), (25, 49)), started="2026-12-03T10:00:00+00:00"):
    rows = scene_rows(list(scenes), [i / 25 for i in range(frames)], 25.0)
    doc = make_document(
        video={"file": video.name, "identity": video_identity(video), "codec": "h264", "width": 64, "height": 36,
               "fps": 25.0, "frame_rate": "25/1", "duration_s": 2.0, "frame_count": frames, "decoded_span_s": 2.0,
               "decode_errors": 0, "decoded_in_segments": 1},
        threshold=0.5, rows=rows, model={"name": "TransNetV2", "weights_file": "w", "weights_sha256": "a" * 64},
        run={"device": "cpu", "precision": "fp32", "torchscript": False, "implementation": ["eager"]},
        timings={"started_at": started, "wall_s": 1.0, "inference_s": 1.0, "model_load_s": 1.0},
        single_frame=[0.9 if i == 24 else 0.0 for i in range(frames)], all_frames=[0.0] * frames)
    write_results(result_paths(video, [video]), rows, doc)
    return doc


@pytest.fixture
def clip(tmp_path):
    video = make_clip(tmp_path / "clip.mp4", (1, 1))
    write_result(video)
    return video


def state(clip, failures=None):
    return examine(clip.parent, clip.name, ResultCache(), failures or {})


def test_states_done_stale_invalid_failed_missing(clip, tmp_path):
    assert state(clip).status == "done"
    clip.with_suffix(".csv").write_text("edited\n")
    result = state(clip)
    assert result.status == "invalid" and "was edited after STEP3 wrote it" in result.cause
    write_result(clip)
    os.utime(clip, ns=(1, 1))
    assert state(clip).status == "stale"
    other = make_clip(tmp_path / "other.mp4", (1,))
    assert state(other).status == "missing"
    failed = state(other, {"other.mp4": "cannot read video: Invalid data"})
    assert (failed.status, failed.cause) == ("failed", "cannot read video: Invalid data")
    clip.with_name("clip.scenes.json").write_text("{}")
    result = state(clip)
    assert result.status == "invalid" and result.cause.startswith("the result cannot be used: video: missing")


def test_review_outdated_reasons(clip):
    doc = json.loads(clip.with_name("clip.scenes.json").read_text())
    saved = reviews.make_review(doc, [(1, 10), (11, 50)], None)
    assert reviews.outdated(saved, doc) is None
    again = dict(doc, timings=dict(doc["timings"], started_at="2026-12-04T10:00:00+00:00"))
    assert "earlier STEP3 analysis" in reviews.outdated(saved, again)
    other_model = dict(doc, model=dict(doc["model"], weights_sha256="b" * 64))
    assert "other model weights" in reviews.outdated(saved, other_model)
    changed = dict(doc, video=dict(doc["video"], identity={"size": 1, "mtime_ns": 1}))
    assert "earlier version of the video" in reviews.outdated(saved, changed)


def test_review_written_atomically_and_a_failed_write_keeps_the_old_one(clip, monkeypatch):
    path = clip.with_name("clip.review.json")
    doc = json.loads(clip.with_name("clip.scenes.json").read_text())
    reviews.save(path, reviews.make_review(doc, [(1, 50)], None))
    before = path.read_bytes()

    def crash(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        reviews.save(path, reviews.make_review(doc, [(1, 10), (11, 50)], None))
    assert path.read_bytes() == before
    assert [p.name for p in clip.parent.iterdir() if p.name.startswith(".dashboard-tmp-")] == []


@pytest.mark.parametrize("text", ["a/%2e%2e/b.mp4", "a/%252e%252e/b.mp4", "%2Fetc/x.mp4", "a%5Cb.mp4", "a\\b.mp4"])
def test_encoded_traversal_is_refused(text):
    with pytest.raises(OutsideRoot):
        check_request_path(text)


def test_thumbnail_queue_is_bounded_and_one_frame_is_made_once(clip, tmp_path):
    cache = ThumbnailCache(tmp_path / "thumbs", workers=1, max_pending=3)
    gate = threading.Event()
    cache._pool.submit(gate.wait)  # hold the only worker
    first = cache.get(clip, 1, 64, 25.0)
    assert cache.get(clip, 1, 64, 25.0) is first
    cache.get(clip, 2, 64, 25.0)
    cache.get(clip, 3, 64, 25.0)
    with pytest.raises(Busy):
        cache.get(clip, 4, 64, 25.0)
    gate.set()
    assert first.result(timeout=60).read_bytes()[:2] == b"\xff\xd8"
    cache.close()
