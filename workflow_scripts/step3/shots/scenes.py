"""Per-frame transition probabilities -> scenes, exactly as the official
``predictions_to_scenes``, and the rows of the result CSV."""
from typing import List, Sequence, Tuple

import numpy as np


def predictions_to_scenes(predictions: np.ndarray, threshold: float = 0.5) -> List[Tuple[int, int]]:
    """0-based inclusive ``(start, end)`` frame pairs.

    A run of consecutive frames above the threshold is one transition: the
    scene before it ends on the run's first frame, the next scene starts on the
    first frame after the run. A video with no frame below the threshold is one
    scene.
    """
    above = np.asarray(predictions).reshape(-1) > threshold
    n = above.shape[0]
    if n == 0:
        return []
    scenes: List[Tuple[int, int]] = []
    start = 0
    previous = False
    for i in range(n):
        current = bool(above[i])
        if previous and not current:
            start = i
        if not previous and current and i != 0:
            scenes.append((start, i))
        previous = current
    if not above[-1]:
        scenes.append((start, n - 1))
    if not scenes:
        return [(0, n - 1)]
    return scenes


def format_timecode(seconds: float) -> str:
    """HH:MM:SS.mmm, rounded to the millisecond."""
    total_ms = int(round(max(0.0, seconds) * 1000))
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{ms:03d}"


CSV_HEADER = ["No", "Timecode In", "Timecode Out", "Frame In", "Frame Out"]


def scene_rows(scenes: Sequence[Tuple[int, int]], timestamps: Sequence[float], fps: float) -> List[list]:
    """CSV rows: frames 1-based inclusive; Timecode In is the first frame's
    timestamp, Timecode Out the end of the last frame (the next frame's
    timestamp, or one frame duration after the last frame of the video)."""
    n = len(timestamps)
    frame_duration = 1.0 / fps if fps > 0 else 0.0
    rows = []
    for number, (start, end) in enumerate(scenes, 1):
        t_in = timestamps[start]
        t_out = timestamps[end + 1] if end + 1 < n else timestamps[end] + frame_duration
        rows.append([number, format_timecode(t_in), format_timecode(t_out), start + 1, end + 1])
    return rows
