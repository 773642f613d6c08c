"""The HTTP side: one blueprint per concern."""
from flask import current_app

from ..service import Dashboard


def dashboard() -> Dashboard:
    return current_app.extensions["dashboard"]
