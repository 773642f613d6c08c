"""The official scene rule (workflow_scripts/step3/shots/scenes.py), without
numpy, for the dashboard's venv: a threshold applied to stored probabilities.
static/js/video_rule.js is the same rule for the page; the browser test checks
the two agree on the sample.

A run of consecutive frames above the threshold is one transition: the scene
before it ends on the run's first frame, the next one starts on the first
frame after the run; no frame below the threshold at all is one scene.
"""
from typing import List, Sequence, Tuple


def runs_above(probabilities: Sequence[float], threshold: float) -> List[Tuple[int, int]]:
    """0-based inclusive runs of frames whose probability is above ``threshold``."""
    runs, start = [], None
    for i, p in enumerate(probabilities):
        if p > threshold:
            if start is None:
                start = i
        elif start is not None:
            runs.append((start, i - 1))
            start = None
    if start is not None:
        runs.append((start, len(probabilities) - 1))
    return runs


def scenes_from_runs(runs: Sequence[Tuple[int, int]], frame_count: int) -> List[Tuple[int, int]]:
    """0-based inclusive scenes, given the transitions (runs) of a video."""
    if frame_count <= 0:
        return []
    scenes, start = [], 0
    for first, last in runs:
        if first > 0:
            scenes.append((start, first))
        start = last + 1
    if not runs or runs[-1][1] < frame_count - 1:
        scenes.append((start, frame_count - 1))
    return scenes or [(0, frame_count - 1)]


def scenes_at(probabilities: Sequence[float], threshold: float) -> List[Tuple[int, int]]:
    """1-based inclusive ``(frame_in, frame_out)`` scenes, as the CSV numbers them."""
    zero_based = scenes_from_runs(runs_above(probabilities, threshold), len(probabilities))
    return [(a + 1, b + 1) for a, b in zero_based]
