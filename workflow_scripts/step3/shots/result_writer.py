"""A video's prediction -> its scenes and its two result files, in the format
stepkit.scene_results owns (docs/result-format.md)."""
from datetime import datetime, timezone
from typing import Optional

from shots import scenes
from shots.video_job import VideoJob, VideoPrediction
from stepkit.scene_results import make_document, scene_rows, video_identity, write_results


def frame_rate(prediction: VideoPrediction) -> float:
    """The declared rate; without one (rare: some raw streams) the mean rate of
    the decoded frames; a single frame with no rate at all gets the usual 25."""
    info, ts = prediction.info, prediction.timestamps
    if info.fps > 0:
        return info.fps
    n = len(ts)
    return (n - 1) / ts[-1] if n > 1 and ts[-1] > 0 else 25.0


def _labels(values) -> object:
    values = sorted(values)
    return values[0] if len(values) == 1 else values


def write_result(job: VideoJob, prediction: VideoPrediction, threshold: float, model: dict,
                 wall_seconds: Optional[float]) -> int:
    """Write the CSV and the JSON next to the video; return the scene count.
    Raises OSError when they cannot be written (nothing is then left behind)."""
    found = scenes.predictions_to_scenes(prediction.single_frame, threshold)
    fps = frame_rate(prediction)
    ts = prediction.timestamps
    rows = scene_rows(found, ts, fps)
    info = prediction.info
    backends = prediction.backends
    document = make_document(
        video={
            "file": job.path.name,
            "identity": video_identity(job.path),
            "codec": info.codec, "width": info.width, "height": info.height,
            "fps": fps, "frame_rate": info.fps_fraction,
            "duration_s": info.duration,
            "frame_count": len(ts),
            "decoded_span_s": ts[-1] + (1.0 / fps if fps > 0 else 0.0),
            "decode_errors": prediction.decode_errors,
            "decoded_in_segments": prediction.segments,
        },
        threshold=threshold, rows=rows, model=model,
        run={
            "device": _labels({d for d, _, _ in backends}),
            "precision": _labels({p for _, p, _ in backends}),
            "torchscript": all(kind == "torchscript" for _, _, kind in backends),
            "implementation": sorted({kind for _, _, kind in backends}),
            "frame_source": _labels(prediction.decoders or {"ffmpeg"}),
        },
        timings={
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "wall_s": round(wall_seconds or 0.0, 3),
            "inference_s": round(prediction.inference_seconds, 3),
            "model_load_s": round(prediction.model_load_seconds, 3),
        },
        single_frame=prediction.single_frame, all_frames=prediction.all_frames)
    write_results(job.paths, rows, document)
    return len(found)
