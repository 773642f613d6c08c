"""A scene list in PySceneDetect's ``list-scenes`` CSV layout: a ``Timecode
List`` line (the cut points), then one row per scene with 1-based inclusive
frames and ``HH:MM:SS.mmm`` times at the video's rate."""
import csv
import io

from ..timecode import clock

HEADER = ["Scene Number", "Start Frame", "Start Timecode", "Start Time (seconds)", "End Frame", "End Timecode",
          "End Time (seconds)", "Length (frames)", "Length (timecode)", "Length (seconds)"]


def render(timeline) -> bytes:
    fps = timeline.rate.fps
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["Timecode List:"] + [clock((a - 1) / fps) for a, _ in timeline.scenes[1:]])
    writer.writerow(HEADER)
    for number, (first, last) in enumerate(timeline.scenes, 1):
        start, end = (first - 1) / fps, last / fps
        length = last - first + 1
        writer.writerow([number, first, clock(start), f"{start:.3f}", last, clock(end), f"{end:.3f}",
                         length, clock(length / fps), f"{length / fps:.3f}"])
    return out.getvalue().encode("utf-8")
