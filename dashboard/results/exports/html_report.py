"""A standalone HTML report of one video: which scene list it is, shot-length
statistics, and a row per scene with its first and last frame as thumbnails
(JPEG data URIs: the file opens from disk, with no server and nothing
fetched). Every name is escaped; the page runs no script."""
import base64
from html import escape

from ..stats import shot_stats
from ..timecode import clock, to_timecode

WIDTH = 160
STYLE = ("body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
         "td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:middle}"
         "img{display:block;height:auto}.muted{color:#666}dl{display:grid;grid-template-columns:auto 1fr;gap:2px 12px}")


def _img(path, frame: int) -> str:
    if path is None:
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="frame {frame}" width="{WIDTH}" src="data:image/jpeg;base64,{data}">'


def render(timeline, thumbnails=None) -> bytes:
    """``thumbnails(frames, width) -> {frame: Path}``; without it, no pictures."""
    frames = [f for scene in timeline.scenes for f in scene]
    pictures = thumbnails(frames, WIDTH) if thumbnails else {}
    rate, fps = timeline.rate, timeline.rate.fps
    stats = shot_stats(timeline.scenes, fps)
    name = escape(timeline.name)
    rows = []
    for number, (first, last) in enumerate(timeline.scenes, 1):
        rows.append(
            f"<tr><td>{number}</td><td>{_img(pictures.get(first), first)}</td><td>{_img(pictures.get(last), last)}</td>"
            f"<td>{first}–{last}</td><td>{to_timecode(first - 1, rate)} – {to_timecode(last, rate)}</td>"
            f"<td>{clock((first - 1) / fps)}</td><td>{last - first + 1} frames ({(last - first + 1) / fps:.2f} s)</td></tr>")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>Scenes of {name}</title><style>{STYLE}</style></head><body>
<h1>Scenes of <span id="video-name">{name}</span></h1>
<p id="source">{escape(timeline.note)}</p>
<dl><dt>Video</dt><dd>{escape(timeline.path)}</dd>
<dt>Frames</dt><dd>{timeline.frame_count} at {fps:.3f} fps ({timeline.width}x{timeline.height})</dd>
<dt>Scenes</dt><dd>{stats['count']}</dd>
<dt>Shortest</dt><dd>{stats['shortest_frames']} frames ({stats['shortest_s']:.2f} s)</dd>
<dt>Longest</dt><dd>{stats['longest_frames']} frames ({stats['longest_s']:.2f} s)</dd>
<dt>Mean</dt><dd>{stats['mean_s']:.2f} s</dd></dl>
<table><thead><tr><th>No</th><th>First frame</th><th>Last frame</th><th>Frames</th><th>Timecode</th><th>Starts at</th><th>Length</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
<p class="muted">Timecodes at {rate.timebase} fps{' drop-frame' if rate.drop_frame else ''}; frames 1-based, inclusive.</p>
</body></html>
"""
    return page.encode("utf-8")
