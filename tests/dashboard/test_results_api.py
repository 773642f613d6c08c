"""The results API on a real STEP3 result of the sample video: the list and a
video's page data, reviews (valid, refused, cross-site), exports using the
review, thumbnails cached outside the projects folder, the video with range
requests, and every route refusing paths that lead out."""
import json
import os
import shutil
import time

import pytest
from results_support import copy_sample_result, make_clip, run_step3, sample_result

from dashboard.results import scene_rule

VIDEO = "demo/sample.mp4"
EVIL = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def fixture_dir():
    return sample_result()


@pytest.fixture
def projects(paths, fixture_dir):
    copy_sample_result(fixture_dir, paths["projects"])
    return paths["projects"]


@pytest.fixture
def web(make_app, projects):
    return make_app([]).test_client()


def test_list_and_detail_of_a_real_result(web, projects):
    make_clip(projects / "new.mp4", (1,))  # not analysed yet
    videos = {v["path"]: v for v in web.get("/api/videos").get_json()["videos"]}
    sample = videos[VIDEO]
    assert (sample["status"], sample["scenes"], sample["frames"], sample["fps"]) == ("done", 108, 5301, 25.0)
    assert sample["reviewed"] is False and sample["duration_s"] == pytest.approx(212.04)
    assert videos["new.mp4"]["status"] == "missing" and videos["new.mp4"]["scenes"] is None

    data = web.get(f"/api/videos/{VIDEO}").get_json()
    assert len(data["step3_scenes"]) == 108 and data["review"] is None
    assert data["rate"] == {"fps": 25.0, "timebase": 25, "ntsc": False, "drop_frame": False}
    preds = data["predictions"]
    assert preds["factor"] == 1 and len(preds["single_frame"]) == 5301
    doc = json.loads((projects / "demo" / "sample.scenes.json").read_text())
    # The dashboard's rule on the stored probabilities gives STEP3's own scenes.
    assert scene_rule.scenes_at(doc["predictions"]["single_frame"], 0.5) == \
        [(s["frame_in"], s["frame_out"]) for s in doc["scenes"]]
    assert data["stats"]["count"] == 108
    ranged = web.get(f"/api/videos/{VIDEO}?from=100&to=199").get_json()["predictions_range"]
    assert ranged["single_frame"] == doc["predictions"]["single_frame"][99:199]


def test_a_stale_result_says_so_and_exports_refuse(web, projects):
    os.utime(projects / VIDEO, None)  # the video changed after STEP3
    listed = web.get("/api/videos").get_json()["videos"][0]
    assert listed["status"] == "stale"
    answer = web.get(f"/api/videos/{VIDEO}/export?format=edl")
    assert answer.status_code == 409 and "stale" in answer.get_json()["error"]
    page = web.get(f"/videos/{VIDEO}").get_data(as_text=True)
    assert "stale: the video changed after it was analysed" in page and 'id="video-page"' not in page
    assert web.put(f"/api/videos/{VIDEO}/review", json={"threshold": 0.3}).status_code == 409


def test_review_saved_used_by_exports_and_dropped(web, projects):
    review_file = projects / "demo" / "sample.review.json"
    answer = web.put(f"/api/videos/{VIDEO}/review", json={"threshold": 0.2})
    assert answer.status_code == 200
    saved = json.loads(review_file.read_text())
    doc = json.loads((projects / "demo" / "sample.scenes.json").read_text())
    assert saved["scenes"] == [list(s) for s in scene_rule.scenes_at(doc["predictions"]["single_frame"], 0.2)]
    assert len(saved["scenes"]) > 108 and saved["threshold"] == 0.2

    edl = web.get(f"/api/videos/{VIDEO}/export?format=edl")
    assert edl.headers["X-Scenes-Source"] == "review"
    assert edl.get_data(as_text=True).count("* FROM CLIP NAME") == len(saved["scenes"])
    step3 = web.get(f"/api/videos/{VIDEO}/export?format=edl&use=step3")
    assert step3.headers["X-Scenes-Source"] == "step3" and step3.get_data(as_text=True).count("* FROM") == 108
    # STEP3's own CSV, byte for byte, when asked for.
    raw = web.get(f"/api/videos/{VIDEO}/export?format=csv&use=step3").data
    assert raw == (projects / "demo" / "sample.csv").read_bytes()
    assert web.get("/api/videos").get_json()["videos"][0]["reviewed"] is True

    edited = [[1, 40], [41, 5301]]
    assert web.put(f"/api/videos/{VIDEO}/review", json={"scenes": edited}).status_code == 200
    csv_text = web.get(f"/api/videos/{VIDEO}/export?format=csv").get_data(as_text=True)
    assert csv_text == "No,Timecode In,Timecode Out,Frame In,Frame Out\n1,00:00:00.000,00:00:01.600,1,40\n" \
                       "2,00:00:01.600,00:03:32.040,41,5301\n"
    assert web.delete(f"/api/videos/{VIDEO}/review").status_code == 200
    assert not review_file.exists()
    assert web.delete(f"/api/videos/{VIDEO}/review").status_code == 404


@pytest.mark.parametrize("body, cause", [
    ({"scenes": [[1, 50], [50, 100]]}, "not after the previous scene"),
    ({"scenes": [[1, 50], [51, 9000]]}, "outside the video's frames 1-5301"),
    ({"scenes": [[60, 50]]}, "is after frame_out"),
    ({"scenes": [[1, "50"]]}, "pair of integers"),
    ({"scenes": [[1, True]]}, "pair of integers"),
    ({"scenes": []}, "non-empty list"),
    ({"threshold": 1.5}, "between 0 and 1"),
    ({"cuts": [5]}, "cuts: not a field"),
    ([1, 2], "JSON object"),
])
def test_a_bad_review_is_a_422_and_changes_nothing(web, projects, body, cause):
    assert web.put(f"/api/videos/{VIDEO}/review", json={"scenes": [[1, 10], [11, 5301]]}).status_code == 200
    before = (projects / "demo" / "sample.review.json").read_bytes()
    answer = web.put(f"/api/videos/{VIDEO}/review", json=body)
    assert answer.status_code == 422 and cause in answer.get_json()["error"]
    assert (projects / "demo" / "sample.review.json").read_bytes() == before
    assert web.put(f"/api/videos/{VIDEO}/review", data="{not json", content_type="application/json").status_code == 422


def test_review_from_another_site_is_refused(web, projects):
    for method in (web.put, web.delete):
        answer = method(f"/api/videos/{VIDEO}/review", json={"threshold": 0.3},
                        headers={"Origin": "http://evil.example"})
        assert answer.status_code == 403
    assert not (projects / "demo" / "sample.review.json").exists()


def test_thumbnails_are_cached_outside_the_projects_folder(web, projects, paths):
    before = sorted(p.name for p in projects.rglob("*"))
    first = web.get(f"/api/videos/{VIDEO}/frame?n=51&w=160")
    for _ in range(120):  # 503 + Retry-After while the pool makes it: the request thread is not held
        if first.status_code != 503:
            break
        assert first.headers["Retry-After"] == "1"
        time.sleep(0.25)
        first = web.get(f"/api/videos/{VIDEO}/frame?n=51&w=160")
    assert first.status_code == 200 and first.mimetype == "image/jpeg" and first.data[:2] == b"\xff\xd8"
    cached = list((paths["db"].parent / "thumbnails").rglob("*.jpg"))
    assert len(cached) == 1
    again = web.get(f"/api/videos/{VIDEO}/frame?n=51&w=160")
    assert again.data == first.data
    assert sorted(p.name for p in projects.rglob("*")) == before
    assert web.get(f"/api/videos/{VIDEO}/frame?n=0").status_code == 400
    assert web.get(f"/api/videos/{VIDEO}/frame?n=5302").status_code == 400


def test_media_answers_range_requests(web, projects):
    data = (projects / VIDEO).read_bytes()
    whole = web.get(f"/media/{VIDEO}")
    assert whole.status_code == 200 and whole.data == data and whole.headers["Accept-Ranges"] == "bytes"
    part = web.get(f"/media/{VIDEO}", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.data == data[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
    tail = web.get(f"/media/{VIDEO}", headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.data == data[-100:]
    assert web.get(f"/media/{VIDEO}", headers={"Range": f"bytes={len(data) + 10}-"}).status_code == 416


ROUTES = ["/api/videos/{p}", "/api/videos/{p}/export?format=edl", "/api/videos/{p}/frame?n=1", "/media/{p}",
          "/videos/{p}"]
BAD = ["demo/../../outside.mp4", "demo/%2e%2e/%2e%2e/outside.mp4", "demo/%252e%252e/%252e%252e/outside.mp4",
       "%2Fetc%2Foutside.mp4", "demo%5C..%5Coutside.mp4", "demo/link-out/outside.mp4", "demo/escape.mp4"]


def test_every_route_refuses_paths_that_lead_out(web, projects, paths):
    outside = paths["projects"].parent / "outside.mp4"
    shutil.copy2(projects / VIDEO, outside)
    os.symlink(paths["projects"].parent, projects / "demo" / "link-out")
    os.symlink(outside, projects / "demo" / "escape.mp4")
    for route in ROUTES:
        for bad in BAD:
            url = route.format(p=bad)
            answer = web.get(url)
            assert answer.status_code == 403, (url, answer.status_code)
    for bad in BAD:
        assert web.put(f"/api/videos/{bad}/review", json={"threshold": 0.3}).status_code == 403
        assert web.delete(f"/api/videos/{bad}/review").status_code == 403
    assert web.get("/api/videos/demo/nothing.mp4").status_code == 404
    assert web.get("/api/videos/demo/sample.csv").status_code == 404  # not a video


def test_names_show_as_text_and_exports_escape_them(web, projects):
    demo = projects / "demo"
    for suffix in (".mp4", ".csv", ".scenes.json"):
        shutil.copy2(demo / f"sample{suffix}", demo / f"{EVIL}{suffix}")
    listing = web.get("/videos").get_data(as_text=True)
    assert EVIL not in listing and "&lt;img src=x onerror=alert(1)&gt;.mp4" in listing
    page = web.get(f"/videos/demo/{EVIL}.mp4").get_data(as_text=True)
    assert EVIL not in page and "&lt;img src=x onerror=alert(1)&gt;.mp4" in page
    report = web.get(f"/api/videos/demo/{EVIL}.mp4/export?format=html").get_data(as_text=True)
    assert EVIL not in report and report.count("data:image/jpeg;base64,") == 2 * 108
    for fmt in ("fcp7", "fcpxml"):
        assert "<img" not in web.get(f"/api/videos/demo/{EVIL}.mp4/export?format={fmt}").get_data(as_text=True)


def test_folder_zip_holds_every_format_and_says_what_it_skipped(web, projects):
    import io
    import zipfile
    make_clip(projects / "new.mp4", (1,))
    archive = zipfile.ZipFile(io.BytesIO(web.get("/api/videos.zip?formats=csv,edl,otio").data))
    names = set(archive.namelist())
    assert {"demo/sample.csv", "demo/sample.edl", "demo/sample.otio", "README.txt"} <= names
    readme = archive.read("README.txt").decode()
    assert "new.mp4: not exported" in readme and "demo/sample.mp4: STEP3's scenes" in readme


def test_a_step3_rerun_keeps_the_review_and_marks_it_outdated(make_app, paths):
    clip = make_clip(paths["projects"] / "clip.mp4", (1, 1))
    run_step3(paths["projects"])
    web = make_app([]).test_client()
    assert web.put("/api/videos/clip.mp4/review", json={"scenes": [[1, 20], [21, 50]]}).status_code == 200
    review = paths["projects"] / "clip.review.json"
    kept = review.read_bytes()
    run_step3(paths["projects"], "--force")
    assert review.read_bytes() == kept
    data = web.get("/api/videos/clip.mp4").get_json()
    assert data["review"]["scenes"] == [[1, 20], [21, 50]]
    assert "earlier STEP3 analysis" in data["review"]["outdated"]
    assert web.get("/api/videos/clip.mp4/export?format=edl").headers["X-Scenes-Source"] == "review"
    # The video replaced by a broken file: STEP3 fails it and removes its stale
    # results, never the review.
    clip.write_bytes(b"not a video")
    from stepkit.scene_results import remove_stale_results, result_paths
    removed = remove_stale_results(clip, result_paths(clip, [clip]))
    assert {p.name for p in removed} == {"clip.csv", "clip.scenes.json"}
    assert review.read_bytes() == kept


def test_contact_sheet_has_a_tile_per_scene(web, projects):
    answer = web.get(f"/api/videos/{VIDEO}/contact-sheet?w=64&columns=10")
    assert answer.status_code == 200 and answer.mimetype == "image/jpeg"
    sheet = projects.parent / "sheet.jpg"
    sheet.write_bytes(answer.data)
    probe = __import__("subprocess").run(["ffprobe", "-v", "error", "-show_entries", "stream=width,height",
                                          "-of", "csv=p=0", str(sheet)], capture_output=True, text=True)
    # 108 scenes: 10 columns, 11 rows of 64x36 tiles, 2 px between them and around.
    assert probe.stdout.strip() == f"{2 * 2 + 10 * 64 + 9 * 2},{2 * 2 + 11 * 36 + 10 * 2}"
    os.utime(projects / VIDEO, None)
    assert web.get(f"/api/videos/{VIDEO}/contact-sheet").status_code == 409  # stale: refused
