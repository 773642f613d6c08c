"""The HTTP side: one blueprint per concern, and the helpers they share."""
from flask import abort, current_app, jsonify, request

from ..service import Dashboard


def dashboard() -> Dashboard:
    return current_app.extensions["dashboard"]


def error(status: int, message: str, **extra):
    response = jsonify(error=message, **extra)
    response.status_code = status
    return response


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """An integer query argument, clamped to [low, high]; a 400 when it is not an integer."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        abort(error(400, f"{name} must be an integer"))
    return max(low, min(high, value))
