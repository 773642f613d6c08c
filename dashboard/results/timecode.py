"""SMPTE timecodes for the exports, frame-exact.

A video's rate comes from its result (``video.frame_rate`` "N/D", else
``video.fps``). Editors label frames with an integer *timebase* (24, 25, 30,
50, 60) and, for the NTSC rates (N/1001: 23.976, 29.97, 59.94), with drop-frame
at 29.97 and 59.94: frame *numbers* 0-1 (0-3 at 59.94) are skipped each minute
except every tenth, so the label stays within a frame of the wall clock
(non-drop labels at 29.97 run 3.6 s per hour behind it). 23.976 has no
drop-frame form: it is labelled non-drop at timebase 24, as editors do.

Variable frame rate: STEP3 counts frames as decoded, and the exports place
frame k at k frames of the declared rate (the mean decoded rate when none is
declared). An editor conforming the file does the same, so cuts land on the
same frames; only the wall-clock time of a label can differ from the frame's
own timestamp. (The CSV keeps the frames' own timestamps.)
"""
from dataclasses import dataclass
from fractions import Fraction

_NTSC_TOLERANCE = 0.002


@dataclass(frozen=True)
class Rate:
    exact: Fraction      # frames per second
    timebase: int        # the integer rate labels count in
    ntsc: bool           # N/1001
    drop_frame: bool     # labels with ';', frame numbers dropped

    @property
    def fps(self) -> float:
        return float(self.exact)

    @property
    def frame_duration(self) -> Fraction:
        return 1 / self.exact


def rate_of(frame_rate: str | None, fps: float) -> Rate:
    """The rate of a result: its declared ``"N/D"`` when it has one, else ``fps``;
    a rate within 0.002 of an NTSC rate is taken as that rate."""
    exact = None
    if frame_rate and frame_rate != "0/1":
        try:
            exact = Fraction(frame_rate)
        except (ValueError, ZeroDivisionError):
            exact = None
    if not exact or exact <= 0:
        exact = Fraction(fps).limit_denominator(1001)
    timebase = max(1, round(float(exact)))
    ntsc_rate = Fraction(timebase * 1000, 1001)
    ntsc = timebase in (24, 30, 48, 60, 120) and abs(float(exact) - float(ntsc_rate)) < _NTSC_TOLERANCE
    if ntsc:
        exact = ntsc_rate
    elif abs(float(exact) - timebase) < _NTSC_TOLERANCE:
        exact = Fraction(timebase)
    return Rate(exact, timebase, ntsc, ntsc and timebase in (30, 60))


def _drop_per_minute(rate: Rate) -> int:
    return 2 * rate.timebase // 30


def label_number(frame: int, rate: Rate) -> int:
    """The frame number a label shows for the ``frame``-th frame (0-based):
    the frame itself, plus the numbers drop-frame skipped before it."""
    if not rate.drop_frame:
        return frame
    drop = _drop_per_minute(rate)
    per_10min = rate.timebase * 600 - drop * 9
    per_min = rate.timebase * 60 - drop
    tens, rest = divmod(frame, per_10min)
    skipped = drop * 9 * tens
    if rest >= drop:
        skipped += drop * ((rest - drop) // per_min)
    return frame + skipped


def frame_of_label(number: int, rate: Rate) -> int:
    """The inverse of label_number: the frame a label's number stands for."""
    if not rate.drop_frame:
        return number
    drop = _drop_per_minute(rate)
    minutes = number // (rate.timebase * 60)
    return number - drop * (minutes - minutes // 10)


def to_timecode(frame: int, rate: Rate) -> str:
    """``HH:MM:SS:FF`` (``HH:MM:SS;FF`` drop-frame) of the 0-based ``frame``."""
    if frame < 0:
        raise ValueError(f"frame {frame} is negative")
    n = label_number(frame, rate)
    tb = rate.timebase
    ff = n % tb
    seconds = n // tb
    sep = ";" if rate.drop_frame else ":"
    return f"{seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}{sep}{ff:02d}"


def from_timecode(text: str, rate: Rate) -> int:
    """The 0-based frame of a label (either separator)."""
    hh, mm, rest = text.strip().split(":", 2)
    ss, ff = rest.replace(";", ":").split(":")
    number = ((int(hh) * 60 + int(mm)) * 60 + int(ss)) * rate.timebase + int(ff)
    return frame_of_label(number, rate)


def seconds_of(frame: int, rate: Rate) -> Fraction:
    return Fraction(frame) / rate.exact


def clock(seconds: float) -> str:
    """``HH:MM:SS.mmm`` (the format of the CSV and of PySceneDetect's lists)."""
    ms = int(round(max(0.0, float(seconds)) * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"
