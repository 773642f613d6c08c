"""Per-frame transition probabilities -> scenes, exactly as the official
``predictions_to_scenes``. (The CSV rows of the scenes belong to the result
format: stepkit.scene_results.scene_rows.)"""
from typing import List, Tuple

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
