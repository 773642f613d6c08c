"""The results pages: every video of the projects folder with its state, and
one video's page (player, plot, cuts, review). The pages are small: their
scripts fetch the data from the API, so a video of 1,800 scenes opens at once."""
from flask import Blueprint, render_template

from . import dashboard
from .videos import library, lookup

bp = Blueprint("video_pages", __name__)

STATUS_WORDS = {
    "done": "analysed", "stale": "stale: the video changed after it was analysed",
    "failed": "STEP3 failed on it", "invalid": "its result cannot be used", "missing": "not analysed yet",
}


@bp.get("/videos")
def videos():
    listed = dashboard().videos()
    rows = library().listing([v["path"] for v in listed["videos"]])
    return render_template("videos.html", videos=rows, listed=listed, words=STATUS_WORDS,
                           projects_dir=str(dashboard().projects_dir))


@bp.get("/videos/<path:relative>", merge_slashes=False)
def video(relative):
    result, failure = lookup(relative)
    if failure is not None:
        status = failure.status_code
        message = failure.get_json()["error"]
        return render_template("video.html", path=relative, result=None, message=message), status
    return render_template("video.html", path=relative, result=result, words=STATUS_WORDS, message=None)
