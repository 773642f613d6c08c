"""The Server-Sent Events stream the pages listen to.

On connect a client gets the whole state, then one event per change. Changes
that come faster than SSE_MIN_INTERVAL_S are merged: the client gets the latest
state, never a backlog.
"""
import json
import threading
import time

from flask import Blueprint, current_app, jsonify

from . import dashboard

bp = Blueprint("events", __name__)


class _Clients:
    """How many streams are open: each one holds a server thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.count = 0


def _event(name: str, data) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@bp.get("/api/events")
def events():
    svc = dashboard()
    cfg = current_app.config
    clients = current_app.extensions.setdefault("sse_clients", _Clients())
    with clients.lock:
        if clients.count >= cfg["SSE_MAX_CLIENTS"]:
            response = jsonify(error="too many open event streams")
            response.status_code = 503
            return response
        clients.count += 1
    heartbeat, min_interval, system_every = cfg["SSE_HEARTBEAT_S"], cfg["SSE_MIN_INTERVAL_S"], cfg["SSE_SYSTEM_S"]

    def stream():
        try:
            seq = svc.bus.seq
            yield "retry: 2000\n\n"
            readiness = svc.readiness_signature()  # before the snapshot: a change after it is sent again
            yield _event("snapshot", svc.snapshot())
            last_sent = last_system = time.monotonic()
            yield _event("system", svc.system.sample())
            while not svc.bus.closed:
                now = time.monotonic()
                if now - last_system >= system_every:
                    last_system = now
                    last_sent = now
                    yield _event("system", svc.system.sample())
                    # A folder or a venv that appears announces itself to no one: look.
                    if svc.readiness_signature() != readiness:
                        readiness = svc.readiness_signature()
                        yield _event("snapshot", svc.snapshot())
                wait = max(0.01, min(heartbeat - (now - last_sent), system_every - (now - last_system)))
                seq, topics = svc.bus.wait(seq, wait)
                if svc.bus.closed:
                    break
                sent = False
                for topic in topics:
                    found = svc.topic_state(topic)
                    if found:
                        yield _event(*found)
                        sent = True
                now = time.monotonic()
                if sent:
                    last_sent = now
                    # Let a burst of changes gather: the next wake-up sends only their latest state.
                    time.sleep(min_interval)
                elif now - last_sent >= heartbeat:
                    last_sent = now
                    yield ": ping\n\n"
        finally:
            with clients.lock:
                clients.count -= 1

    response = current_app.response_class(stream(), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    return response
