"""Cutting one video into one file per scene, with ffmpeg, in one pass.

Re-encode (the default, frame-accurate): the video is decoded once and
encoded with a keyframe forced on the first frame of every piece; the segment
muxer then starts a new file at exactly those frames (``segment_frames``,
counted as decoded: the frames STEP3 numbers). Frames of a transition that
belong to no scene become their own pieces, which are dropped.

Stream copy (``copy``): no decoding, much faster, but a file can only start
on a keyframe of the original: each scene is copied from the keyframe at or
before its first frame, so a file can begin early (the step says so).

Audio is kept (re-encoded to AAC in the first mode, copied in the second).
The pieces are written into a temporary folder and renamed into place.
"""
import os
import subprocess
from pathlib import Path
from typing import Callable, List, Sequence, Tuple

VIDEO_ARGS = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"]
AUDIO_ARGS = ["-c:a", "aac", "-b:a", "192k"]


def pieces(scenes: Sequence[Tuple[int, int]], frame_count: int) -> List[Tuple[int, int, int]]:
    """The video as consecutive pieces ``(start, end, scene)``, 0-based, end
    exclusive; ``scene`` is the scene's index, or -1 for frames of no scene."""
    out, position = [], 0
    for index, (first, last) in enumerate(scenes):
        if first - 1 > position:
            out.append((position, first - 1, -1))
        out.append((first - 1, last, index))
        position = last
    if position < frame_count:
        out.append((position, frame_count, -1))
    return out


def _any_of(terms: List[str]) -> str:
    """``a+b+...`` as a balanced tree (ffmpeg refuses flat chains past ~100 terms)."""
    if len(terms) == 1:
        return terms[0]
    middle = len(terms) // 2
    return f"({_any_of(terms[:middle])}+{_any_of(terms[middle:])})"


def command(video: Path, parts: List[Tuple[int, int, int]], folder: Path, extension: str, copy: bool,
            has_audio: bool, ffmpeg: str = "ffmpeg") -> List[str]:
    starts = [start for start, _, _ in parts[1:]]
    cmd = [ffmpeg, "-nostdin", "-v", "error", "-progress", "pipe:1", "-nostats", "-i", str(video),
           "-map", "0:v:0"]
    if has_audio:
        cmd += ["-map", "0:a:0"]
    if copy:
        cmd += ["-c", "copy"]
    else:
        cmd += VIDEO_ARGS + (AUDIO_ARGS if has_audio else []) + ["-fps_mode", "passthrough"]
        if starts:
            # A keyframe on the first frame of each piece, by its decoded index:
            # exact whatever the rate. A list of times would be exact at a
            # constant rate only; it is faster (1,800 cuts over 15,000 frames:
            # 8.7 s against 14.1 s on 2 busy cores), not worth a wrong cut.
            cmd += ["-force_key_frames", "expr:" + _any_of([f"eq(n,{s})" for s in starts])]
    cmd += ["-f", "segment", "-reset_timestamps", "1"]
    if starts:
        cmd += ["-segment_frames", ",".join(map(str, starts))]
    else:
        cmd += ["-segment_time", "999999999"]  # one scene: one piece (segment_time takes no 1e9)
    cmd += [str(folder / f"piece-%06d{extension}")]
    return cmd


def run(cmd: List[str], on_frames: Callable[[int], None]) -> None:
    """ffmpeg, reporting the frames it has written (its -progress lines)."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace")
    try:
        for line in proc.stdout:
            if line.startswith("frame="):
                value = line.strip()[6:]
                if value.isdigit():
                    on_frames(int(value))
        error = proc.stderr.read()
        if proc.wait() != 0:
            last = error.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
            raise RuntimeError(f"ffmpeg failed: {last[0]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def keep_scenes(folder: Path, parts: List[Tuple[int, int, int]], extension: str, names: List[str]) -> List[Path]:
    """Rename the scene pieces to their names, remove the gap pieces."""
    made = sorted(folder.glob(f"piece-*{extension}"))
    if len(made) != len(parts):
        raise RuntimeError(f"ffmpeg wrote {len(made)} pieces where {len(parts)} were due")
    kept = []
    for path, (_, _, scene) in zip(made, parts):
        if scene < 0:
            path.unlink()
        else:
            target = folder / names[scene]
            os.replace(path, target)
            kept.append(target)
    return kept


def copy_scene(video: Path, first: int, last: int, fps: float, target: Path, ffmpeg: str = "ffmpeg") -> None:
    """Stream copy of one scene: starts at the keyframe at or before its first
    frame (what copying can do), so it can begin a little early."""
    start, length = (first - 1) / fps, (last - first + 1) / fps
    cmd = [ffmpeg, "-nostdin", "-v", "error", "-ss", f"{start:.6f}", "-i", str(video), "-t", f"{length:.6f}",
           "-map", "0:v:0", "-map", "0:a:0?", "-c", "copy", "-avoid_negative_ts", "make_zero", "-y", str(target)]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        last_line = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        raise RuntimeError(f"ffmpeg failed: {last_line[0]}")
