"""CMX3600 EDL: one cut event per scene, source and record in/out equal (the
scenes sit on the timeline where they are in the video; transition frames that
belong to no scene are left empty), out points exclusive as CMX3600 has them.
``FCM: DROP FRAME`` and ``;`` labels at 29.97/59.94 (timecode.py), non-drop
at every other rate. The file name goes in a ``* FROM CLIP NAME:`` comment,
with line breaks and control characters replaced: an EDL is one event a line."""
import re

from ..timecode import to_timecode

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def one_line(text: str) -> str:
    return _UNSAFE.sub("_", text)


def render(timeline) -> bytes:
    rate = timeline.rate
    lines = [f"TITLE: {one_line(timeline.name)[:70]}",
             f"FCM: {'DROP FRAME' if rate.drop_frame else 'NON-DROP FRAME'}", ""]
    for number, (first, last) in enumerate(timeline.scenes, 1):
        tc_in, tc_out = to_timecode(first - 1, rate), to_timecode(last, rate)
        lines.append(f"{number:03d}  AX       V     C        {tc_in} {tc_out} {tc_in} {tc_out}")
        lines.append(f"* FROM CLIP NAME: {one_line(timeline.name)}")
        lines.append("")
    return ("\n".join(lines)).encode("utf-8")
