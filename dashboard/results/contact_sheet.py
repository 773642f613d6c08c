"""A contact sheet: one JPEG with a tile per scene (its first frame), for a
quick look at a whole video. One ffmpeg pass: ``select`` picks the scenes'
first frames by decoded index, ``tile`` lays them out in rows of ``columns``."""
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Sequence, Tuple

from .thumbnails import INPUT, _any_of, _run, _scale


def sheet_name(scenes: Sequence[Tuple[int, int]], width: int, columns: int) -> str:
    digest = hashlib.sha256(repr([s[0] for s in scenes]).encode()).hexdigest()[:16]
    return f"sheet-{digest}-w{width}-c{columns}.jpg"


def make(video: Path, scenes: Sequence[Tuple[int, int]], width: int, columns: int, out: Path,
         ffmpeg: str = "ffmpeg") -> Path:
    starts = [first for first, _ in scenes]
    columns = max(1, min(columns, len(starts)))
    rows = -(-len(starts) // columns)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".sheet-", dir=out.parent) as tmp:
        script = Path(tmp) / "graph.txt"
        expr = _any_of([f"eq(n\\,{n - 1})" for n in starts])
        script.write_text(f"select='{expr}',{_scale(width)},tile={columns}x{rows}:padding=2:margin=2")
        made = Path(tmp) / "sheet.jpg"
        _run([ffmpeg, "-nostdin", "-v", "error", "-i", INPUT, "-map", "0:v:0", "-filter_script:v", str(script),
              "-fps_mode", "passthrough", "-frames:v", "1", "-q:v", "4", "-f", "image2", str(made)], 3600, video)
        os.replace(made, out)
    return out
