"""Change notifications from the runner to the event streams.

Publishing is cheap (a counter and a notify) because a step printing tens of
thousands of lines a second publishes at that rate. A subscriber asks which
topics changed since the last sequence number it saw and renders only the
latest state of each, so bursts coalesce instead of queueing.
"""
import threading

STEP_TOPIC = "step:"


def topic_of(step_id: str) -> str:
    """The topic a step's card listens to."""
    return f"{STEP_TOPIC}{step_id}"


class EventBus:
    def __init__(self):
        self._cond = threading.Condition()
        self._seq = 0
        self._changed: dict[str, int] = {}
        self._closed = False

    @property
    def seq(self) -> int:
        with self._cond:
            return self._seq

    @property
    def closed(self) -> bool:
        return self._closed

    def publish(self, topic: str) -> None:
        with self._cond:
            self._seq += 1
            self._changed[topic] = self._seq
            self._cond.notify_all()

    def wait(self, since: int, timeout: float) -> tuple[int, list[str]]:
        """Block until a topic changes after ``since`` (or timeout, or close).

        Returns the new sequence number and the topics changed since ``since``.
        """
        with self._cond:
            if self._seq <= since and not self._closed:
                self._cond.wait(timeout)
            topics = [t for t, s in self._changed.items() if s > since]
            return self._seq, topics

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
