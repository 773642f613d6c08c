"""The Server-Sent Events stream the pages listen to.

On connect a client gets the whole state, then one event per change. Changes
that come faster than SSE_MIN_INTERVAL_S are merged: the client gets the latest
state, never a backlog.

Each stream holds a server thread, so there are at most SSE_MAX_CLIENTS. When
they are all taken, a new stream ends the oldest one (which was open for at
least EVICT_AFTER_S) instead of being refused: one client holding every slot
cannot lock the others out for good. The page's script reconnects whatever
happened (an ended stream, a 503, a restart).
"""
import itertools
import json
import threading
import time
from collections import OrderedDict

from flask import Blueprint, current_app, jsonify

from . import dashboard

bp = Blueprint("events", __name__)


EVICT_AFTER_S = 5.0  # a stream younger than this is not ended for a newcomer (no merry-go-round)
EVICT_TOPIC = "_evict"  # wakes the streams, so that an ended one lets its thread go at once


class _Clients:
    """The open streams, oldest first: each one holds a server thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self._streams: OrderedDict[int, tuple[float, threading.Event]] = OrderedDict()
        self._ids = itertools.count(1)

    @property
    def count(self) -> int:
        with self.lock:
            return len(self._streams)

    def admit(self, limit: int) -> tuple[int | None, threading.Event | None, bool]:
        """(stream id, its stop event, whether an older stream was ended); (None, None, False) when full."""
        now = time.monotonic()
        evicted = False
        with self.lock:
            if len(self._streams) >= limit:
                oldest = next(iter(self._streams.items()), None)
                if oldest is None or now - oldest[1][0] < EVICT_AFTER_S:
                    return None, None, False
                del self._streams[oldest[0]]
                oldest[1][1].set()
                evicted = True
            stream_id, stop = next(self._ids), threading.Event()
            self._streams[stream_id] = (now, stop)
            return stream_id, stop, evicted

    def leave(self, stream_id: int) -> None:
        with self.lock:
            self._streams.pop(stream_id, None)

    def end_all(self) -> None:
        """End every stream (tests, and a page that must reconnect)."""
        with self.lock:
            for _, stop in self._streams.values():
                stop.set()
            self._streams.clear()


def _event(name: str, data) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@bp.get("/api/events")
def events():
    svc = dashboard()
    cfg = current_app.config
    clients = current_app.extensions.setdefault("sse_clients", _Clients())
    stream_id, stop, evicted = clients.admit(cfg["SSE_MAX_CLIENTS"])
    if stream_id is None:
        response = jsonify(error="too many open event streams; the page tries again by itself")
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response
    if evicted:
        svc.log.warning("event streams: all %d taken; the oldest one was ended for a new one", cfg["SSE_MAX_CLIENTS"])
        svc.bus.publish(EVICT_TOPIC)
    heartbeat, min_interval, system_every = cfg["SSE_HEARTBEAT_S"], cfg["SSE_MIN_INTERVAL_S"], cfg["SSE_SYSTEM_S"]

    def stream():
        try:
            seq = svc.bus.seq
            yield "retry: 2000\n\n"
            readiness = svc.readiness_signature()  # before the snapshot: a change after it is sent again
            yield _event("snapshot", svc.snapshot())
            last_sent = last_system = time.monotonic()
            yield _event("system", svc.system.sample())
            while not svc.bus.closed and not stop.is_set():
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
                if svc.bus.closed or stop.is_set():
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
            clients.leave(stream_id)

    response = current_app.response_class(stream(), mimetype="text/event-stream")
    # A body never iterated (HEAD, a client gone at once) never runs the generator's finally.
    response.call_on_close(lambda: clients.leave(stream_id))
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    return response
