"""Error pages: JSON under /api/ (scripts read it), the site's own page elsewhere."""
from flask import Blueprint, render_template, request

from . import error

bp = Blueprint("errors", __name__)

# What a user reads, by status; the code itself is in the page's title.
SENTENCES = {
    400: "This address asks for something the dashboard does not understand.",
    404: "There is no page at this address.",
    405: "This address does not answer that kind of request.",
    500: "Something went wrong inside the dashboard; the details are in its log, app.log.",
}


@bp.app_errorhandler(400)
@bp.app_errorhandler(404)
@bp.app_errorhandler(405)
@bp.app_errorhandler(500)
def http_error(exc):
    code = getattr(exc, "code", 500) or 500
    if request.path.startswith("/api/"):
        return error(code, getattr(exc, "description", None) or "internal error")
    sentence = SENTENCES.get(code, "This request could not be answered.")
    if code == 400 and getattr(exc, "description", None):
        sentence = f"{sentence} ({exc.description})"
    return render_template("error.html", code=code, sentence=sentence), code
