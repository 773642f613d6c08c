"""The time a run has left, shown only once it means something.

The first estimate used to be the elapsed time scaled by the fraction done:
STEP3 spends its first seconds loading the model and starting its decoders,
with nothing done, so the first figures were 5 to 9 times too long. The rate
here is measured from the first progress on, and no figure is given until
the run has reported progress for MIN_SECONDS, has done MIN_FRACTION of its
work, and goes at a steady pace: the rate over the second half of what was
seen within STEADY of the rate over all of it.
"""
import bisect


class Eta:
    MIN_SECONDS = 4.0
    MIN_FRACTION = 0.03
    STEADY = 0.3
    MIN_GAP_S = 0.25   # samples closer than this add nothing but memory
    MAX_SAMPLES = 2048  # then every other one is dropped: the whole span stays covered

    def __init__(self):
        self._times: list[float] = []
        self._fractions: list[float] = []

    def observe(self, now: float, fraction: float | None) -> None:
        """The fraction done at ``now`` (monotonic seconds); call it as progress comes."""
        if not fraction or fraction <= 0:
            return
        if self._times and fraction <= self._fractions[-1]:
            return
        if len(self._times) > 1 and now - self._times[-2] < self.MIN_GAP_S:
            # Close to the one before: the latest sample moves on (never the first, the rate's origin).
            self._times[-1], self._fractions[-1] = now, fraction
            return
        self._times.append(now)
        self._fractions.append(fraction)
        if len(self._times) > self.MAX_SAMPLES:
            # Thin the middle, keep the first sample: the rate is measured from it.
            self._times = self._times[:1] + self._times[2::2]
            self._fractions = self._fractions[:1] + self._fractions[2::2]

    def estimate(self, now: float) -> float | None:
        """Seconds left, or None while no figure would be meaningful."""
        if len(self._times) < 3:
            return None
        t0, f0 = self._times[0], self._fractions[0]
        t1, f1 = self._times[-1], self._fractions[-1]
        span = t1 - t0
        if span < self.MIN_SECONDS or f1 < self.MIN_FRACTION or f1 >= 1:
            return None
        rate = (f1 - f0) / span
        if rate <= 0:
            return None
        # The pace over the second half of the span, against the whole.
        middle = max(0, min(len(self._times) - 2, bisect.bisect_right(self._times, t0 + span / 2) - 1))
        tm, fm = self._times[middle], self._fractions[middle]
        if t1 - tm <= 0:
            return None
        recent = (f1 - fm) / (t1 - tm)
        if abs(recent / rate - 1) > self.STEADY:
            return None
        return max(0.0, (1 - f1) / rate - (now - t1))
