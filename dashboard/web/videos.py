"""The results view's API: the videos and their results, reviews, exports,
thumbnails, and the video files themselves (with range requests). Every path
in these URLs is looked up inside the projects folder (dashboard/safe_open.py):
anything leading out is a 403."""
import io
import json
import mimetypes
import os
import zipfile
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request, send_file

from ..results import review as reviews
from ..results.exports import FORMATS, file_name, renderer
from ..results.library import ResultsLibrary, real_relative
from ..results import contact_sheet as sheets
from ..results.thumbnails import Busy, clamp_width, video_key
from ..results.timeline import ExportRefused, timeline_of
from ..safe_open import OutsideRoot, open_inside
from . import dashboard, error, int_arg

bp = Blueprint("videos", __name__)
# A request thread waits this long for a thumbnail the pool is making, then
# answers 503 + Retry-After and the page asks again: request threads are never
# held for ffmpeg (a page of 1,800 cuts asks for thousands).
THUMB_WAIT_S = 0.25
PATH_PREFIXES = ("/api/videos/", "/media/", "/videos/")


@bp.before_app_request
def refuse_absolute_paths():
    """``/media//etc/x.mp4`` names an absolute path; no rule matches it (a
    path converter cannot start with '/'), but it is refused as such, not
    answered 'not found'."""
    for prefix in PATH_PREFIXES:
        if request.path.startswith(prefix + "/"):
            return refused(request.path[len(prefix):], OutsideRoot("absolute paths are refused"))
    return None


def library() -> ResultsLibrary:
    app = current_app
    lib = app.extensions.get("results")
    if lib is None:
        svc = dashboard()
        folder = app.config.get("THUMBNAIL_CACHE") or Path(app.config["DATABASE"]).parent / "thumbnails"
        lib = app.extensions.setdefault("results", ResultsLibrary(svc.projects_dir, Path(folder), step3_failures))
    return lib


def step3_failures() -> dict:
    """{video: cause} of STEP3's last run on this projects folder."""
    svc = dashboard()
    runs, _ = svc.runs("step3", None, 1, 0, str(svc.projects_dir))
    return {f["item"]: f["detail"] for f in (runs[0].get("failures") or [])} if runs else {}


def refused(relative: str, exc: Exception):
    dashboard().log.warning("refused video path %r from %s: %s", relative, request.remote_addr, exc)
    return error(403, f"refused: {exc}")


def lookup(relative: str):
    """(result, None) or (None, an error response)."""
    try:
        return library().examine(relative), None
    except OutsideRoot as exc:
        return None, refused(relative, exc)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None, error(404, f"no video {relative} in the projects folder")


@bp.get("/api/videos")
def list_videos():
    listed = dashboard().videos()
    videos = library().listing([v["path"] for v in listed["videos"]])
    return jsonify(videos=videos, count=listed["count"], truncated=listed["truncated"])


@bp.get("/api/videos/<path:relative>", merge_slashes=False)
def video(relative):
    result, failure = lookup(relative)
    if failure:
        return failure
    first, last = request.args.get("from"), request.args.get("to")
    if first is not None or last is not None:
        first, last = int_arg("from", 1, 1, 10**9), int_arg("to", 1, 1, 10**9)
    return jsonify(library().detail(result, first, last))


@bp.put("/api/videos/<path:relative>/review", merge_slashes=False)
def put_review(relative):
    result, failure = lookup(relative)
    if failure:
        return failure
    if not result.usable:
        return error(409, f"{relative} has no usable result ({result.status}): nothing to review")
    if (request.content_length or 0) > reviews.MAX_BODY:
        return error(413, "the review is too large")
    try:
        body = json.loads(request.get_data(as_text=True) or "null")
    except ValueError as exc:
        return error(422, f"the review is not JSON: {exc}")
    try:
        scenes, threshold = reviews.scenes_from_request(body, result.document)
    except reviews.ReviewError as exc:
        return error(422, str(exc))
    saved = reviews.make_review(result.document, scenes, threshold)
    reviews.save(result.review_path, saved)
    dashboard().log.info("review of %s saved: %d scenes", relative, len(scenes))
    return jsonify(review=reviews.load(result.review_path, result.document))


@bp.delete("/api/videos/<path:relative>/review", merge_slashes=False)
def delete_review(relative):
    result, failure = lookup(relative)
    if failure:
        return failure
    if result.json_path is None or not reviews.remove(result.review_path):
        return error(404, f"{relative} has no review")
    return jsonify(removed=True)


def export_bytes(result, fmt: str, use: str) -> tuple:
    timeline = timeline_of(result, library().review_of(result), use)
    render = renderer(fmt)
    if fmt == "html":
        thumbs = library().thumbnails
        data = render(timeline, lambda frames, width: thumbs.many(result.file, frames, width))
    else:
        data = render(timeline)
    return data, timeline


@bp.get("/api/videos/<path:relative>/export", merge_slashes=False)
def export(relative):
    fmt, use = request.args.get("format", "csv"), request.args.get("use", "auto")
    if fmt not in FORMATS:
        return error(400, f"format must be one of {', '.join(FORMATS)}")
    if use not in ("auto", "review", "step3"):
        return error(400, "use must be auto, review or step3")
    result, failure = lookup(relative)
    if failure:
        return failure
    try:
        data, timeline = export_bytes(result, fmt, use)
    except ExportRefused as exc:
        return error(409, str(exc))
    response = send_file(io.BytesIO(data), mimetype=FORMATS[fmt][2], as_attachment=True,
                         download_name=file_name(timeline.name, fmt))
    response.headers["X-Scenes-Source"] = timeline.source  # "review" or "step3"
    return response


@bp.get("/api/videos.zip")
def export_folder():
    formats = [f for f in (request.args.get("formats") or ",".join(FORMATS)).split(",") if f]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        return error(400, f"unknown format {unknown[0]}; formats: {', '.join(FORMATS)}")
    lib, notes = library(), []
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in dashboard().videos()["videos"]:
            try:
                result = lib.examine(item["path"])
                folder = item["path"].rsplit("/", 1)[0] + "/" if "/" in item["path"] else ""
                for fmt in formats:
                    data, timeline = export_bytes(result, fmt, "auto")
                    archive.writestr(folder + file_name(timeline.name, fmt), data)
                notes.append(f"{item['path']}: {timeline.note}")
            except (ExportRefused, OSError, RuntimeError) as exc:
                notes.append(f"{item['path']}: not exported: {exc}")
        archive.writestr("README.txt", "Scenes exported by the video workflow dashboard.\n\n"
                         + "\n".join(notes) + "\n")
    buffer.seek(0)
    return send_file(buffer, mimetype="application/zip", as_attachment=True, download_name="scenes.zip")


@bp.get("/api/videos/<path:relative>/frame", merge_slashes=False)
def frame(relative):
    result, failure = lookup(relative)
    if failure:
        return failure
    if result.document is None:
        return error(409, f"{relative} has not been analysed: its frame count is unknown")
    frames = result.document["video"]["frame_count"]
    raw = request.args.get("n", "")
    if not raw.isdigit() or not 1 <= int(raw) <= frames:
        return error(400, f"n must be a frame number from 1 to {frames}")
    width = clamp_width(int_arg("w", 160, 16, 1280))
    try:
        future = library().thumbnails.get(result.file, int(raw), width, result.document["video"]["fps"])
    except Busy as exc:
        response = error(503, str(exc))
        response.headers["Retry-After"] = "2"
        return response
    try:
        # The work is the pool's; this thread only waits for its file.
        path = future.result(timeout=THUMB_WAIT_S)
    except TimeoutError:
        response = error(503, "the thumbnail is still being made: ask again")
        response.headers["Retry-After"] = "1"
        return response
    except (RuntimeError, OSError) as exc:
        return error(500, str(exc))
    response = send_file(path, mimetype="image/jpeg", max_age=3600)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


@bp.get("/api/videos/<path:relative>/contact-sheet", merge_slashes=False)
def contact_sheet(relative):
    """One JPEG, a tile per scene of the list exports use (review or STEP3's)."""
    result, failure = lookup(relative)
    if failure:
        return failure
    try:
        timeline = timeline_of(result, library().review_of(result))
    except ExportRefused as exc:
        return error(409, str(exc))
    width = clamp_width(int_arg("w", 160, 16, 640))
    columns = int_arg("columns", 8, 1, 50)
    thumbs = library().thumbnails
    out = thumbs.folder / video_key(result.file) / sheets.sheet_name(timeline.scenes, width, columns)
    if not out.exists():
        try:
            thumbs.run(sheets.make, result.file, timeline.scenes, width, columns, out).result(timeout=600)
        except (RuntimeError, OSError, TimeoutError) as exc:
            return error(500, f"the contact sheet could not be made: {exc}")
    response = send_file(out, mimetype="image/jpeg", download_name=f"{Path(timeline.name).stem}.contact-sheet.jpg")
    response.headers["X-Scenes-Source"] = timeline.source
    return response


@bp.get("/media/<path:relative>", merge_slashes=False)
def media(relative):
    result, failure = lookup(relative)
    if failure:
        return failure
    root = dashboard().projects_dir
    try:
        handle = open_inside(root, real_relative(root, result.file))
    except OutsideRoot as exc:
        return refused(relative, exc)
    except (FileNotFoundError, IsADirectoryError):
        return error(404, f"no video {relative}")
    return serve_file(handle, result.file.name)


def serve_file(handle, name: str) -> Response:
    """An open file with Range support (werkzeug's make_conditional, given the size)."""
    st = os.fstat(handle.fileno())
    from werkzeug.wsgi import wrap_file
    mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = Response(wrap_file(request.environ, handle), mimetype=mimetype, direct_passthrough=True)
    response.content_length = st.st_size
    response.last_modified = int(st.st_mtime)
    response.set_etag(f"{st.st_ino}-{st.st_size}-{st.st_mtime_ns}")
    response.headers["Cache-Control"] = "no-cache"
    return response.make_conditional(request.environ, accept_ranges=True, complete_length=st.st_size)
