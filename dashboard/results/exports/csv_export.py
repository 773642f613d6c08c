"""The CSV as STEP3 writes it (``No,Timecode In,Timecode Out,Frame In,Frame Out``).
STEP3's own scenes: its file's rows, rebuilt from the JSON, which holds the same
values. A review: the same columns, timecodes from the frame numbers at the
video's rate (the JSON keeps no per-frame timestamps)."""
from stepkit.scene_results import csv_text

from ..timecode import clock


def render(timeline) -> bytes:
    if timeline.source == "step3":
        rows = [[s["no"], s["timecode_in"], s["timecode_out"], s["frame_in"], s["frame_out"]]
                for s in timeline.document["scenes"]]
    else:
        fps = timeline.rate.fps
        rows = [[i, clock((a - 1) / fps), clock(b / fps), a, b] for i, (a, b) in enumerate(timeline.scenes, 1)]
    return csv_text(rows).encode("utf-8")
