"""Splitting a long video into keyframe-aligned segments that decoders work
on in parallel, and the rough decoding cost that sizes them."""
import os
import subprocess
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from shots.frames.messages import SegmentPlan
from shots.frames.probe import VideoInfo, probe

WHOLE_VIDEO = SegmentPlan(None, 0, None)

# Rough cost of one frame for one ffmpeg process: a fixed part, and a part that
# grows with the picture (decoding, and the bicubic scaler's long filters).
FRAME_COST_S = 1.5e-4
PIXEL_COST_S = 3e-9
MIN_SEGMENT_FRAMES = 250  # each segment costs an ffmpeg start and a seek (about 0.1 s)


def segment_frames(info: VideoInfo, seconds: float) -> int:
    """Frames that take one decoder about ``seconds`` for this video."""
    per_frame = FRAME_COST_S + PIXEL_COST_S * info.width * info.height
    return max(MIN_SEGMENT_FRAMES, int(seconds / per_frame))


def plan_segments(info: VideoInfo, target_frames: int, timeout: float = 120.0) -> Optional[List[SegmentPlan]]:
    """Split a long video at keyframes into segments of about ``target_frames``.

    Each segment gives the pts of its first keyframe, the index of its first
    frame and its frame count. Frame indices come from the packets'
    timestamps (a frame's index is the number of frames shown before it), which
    the segments' decoders then verify. None when the video is too short or its
    timestamps don't allow it.
    """
    cmd = ["ffprobe", "-v", "error", "-select_streams", str(info.stream_index), "-show_entries",
           "packet=pts_time,flags", "-of", "csv=p=0", os.path.abspath(info.path)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    pts, keys = [], []
    for line in out.splitlines():
        fields = line.strip().split(",")
        if len(fields) < 2:
            continue
        flags = fields[1]
        if "D" in flags:  # discarded by the demuxer (edit lists): never shown
            continue
        try:
            t = float(fields[0])
        except ValueError:
            return None  # a packet without a timestamp: frame indices can't be known
        pts.append(t)
        if "K" in flags:
            keys.append(t)
    total = len(pts)
    if total < 2 * target_frames or not keys:
        return None
    ordered = np.sort(np.array(pts))
    if np.any(np.diff(ordered) <= 0):
        return None  # duplicate timestamps: no unambiguous order
    starts = [0]
    for key in sorted(set(keys)):
        index = int(np.searchsorted(ordered, key))
        if index - starts[-1] >= target_frames and total - index >= target_frames // 2:
            starts.append(index)
    if len(starts) < 2:
        return None
    bounds = starts + [total]
    return [SegmentPlan(float(ordered[a]) if i else None, a, b - a)
            for i, (a, b) in enumerate(zip(bounds, bounds[1:]))]


def plan_video(path: Path, split_seconds: Optional[float] = None,
               split_frames: Optional[int] = None) -> Tuple[VideoInfo, List[SegmentPlan]]:
    """Probe a video and decide its decoding tasks: ``(info, segments)``, one
    segment (the whole video) unless it is long enough to split."""
    info = probe(path)
    target = split_frames or (segment_frames(info, split_seconds) if split_seconds else None)
    segments = None
    if target and info.expected_frames and info.expected_frames >= 2 * target:
        segments = plan_segments(info, target)
    return info, segments or [WHOLE_VIDEO]


def decode_seconds(info: VideoInfo, frames: Optional[int]) -> float:
    """Rough time one decoder needs for ``frames`` frames of this video."""
    n = frames if frames is not None else (info.expected_frames or 0)
    return n * (FRAME_COST_S + PIXEL_COST_S * info.width * info.height)


def default_decoder_threads(info: VideoInfo, workers: int) -> int:
    """Threads per ffmpeg: the cores shared by the decoders, more for big pictures."""
    cores = os.cpu_count() or 1
    share = max(1, cores // max(1, workers))
    pixels = info.width * info.height
    wanted = 1 if pixels <= 640 * 360 else 2 if pixels <= 1280 * 720 else 4
    return max(1, min(share, wanted))
