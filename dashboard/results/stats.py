"""Shot-length statistics of a scene list (1-based inclusive frames)."""


def shot_stats(scenes, fps: float) -> dict:
    lengths = [b - a + 1 for a, b in scenes]
    if not lengths:
        return {"count": 0, "shortest_frames": 0, "longest_frames": 0, "mean_frames": 0.0,
                "shortest_s": 0.0, "longest_s": 0.0, "mean_s": 0.0}
    mean = sum(lengths) / len(lengths)
    return {"count": len(lengths), "shortest_frames": min(lengths), "longest_frames": max(lengths),
            "mean_frames": mean, "shortest_s": min(lengths) / fps, "longest_s": max(lengths) / fps,
            "mean_s": mean / fps}
