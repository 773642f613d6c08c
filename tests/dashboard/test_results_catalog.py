"""The results' states and reviews without a server: a result written in
STEP3's format (stepkit.scene_results) for a generated clip, then changed the
ways a user's folder changes."""
import json
import os
import threading

import pytest
from results_support import make_clip, write_result

from dashboard.results import review as reviews
from dashboard.results.catalog import ResultCache, examine
from dashboard.results.library import check_request_path
from dashboard.results.thumbnails import Busy, ThumbnailCache
from dashboard.safe_open import OutsideRoot


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
