"""The HTTP side: one blueprint per concern, and the helpers they share."""
import re

from flask import abort, current_app, jsonify, request

from ..service import Dashboard


def dashboard() -> Dashboard:
    return current_app.extensions["dashboard"]


def error(status: int, message: str, **extra):
    response = jsonify(error=message, **extra)
    response.status_code = status
    return response


MAX_ID = 2**63 - 1  # SQLite's largest integer: a larger id is no row, not an overflow


def parse_int(text: str | None) -> int | None:
    """``text`` as an integer if it is one written in ASCII digits (an optional
    minus, at most 19 digits), else None. ``str.isdigit()`` passes "²", which
    ``int()`` refuses; ``int()`` takes "٣", " 3 " and "1_000", with no bound."""
    if text is None or not re.fullmatch(r"-?[0-9]{1,19}", text):
        return None
    return int(text)


def parse_id(text: str | None) -> int | None:
    """A run id from a request, or None when ``text`` is not one."""
    value = parse_int(text)
    return value if value is not None and 0 < value <= MAX_ID else None


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """An integer query argument, clamped to [low, high]; a 400 when it is not an integer."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    value = parse_int(raw)
    if value is None:
        abort(400, description=f"{name} must be an integer (ASCII digits, at most 19)")
    return max(low, min(high, value))
