"""Frames for the model: what a video is (probe.py), how it is cut into
decoding tasks (segments.py), and where its frames come from (the FrameSource
interface of source.py and its messages, messages.py; the ffmpeg
implementation: ffmpeg_reader.py, ffmpeg_process.py, ffmpeg_source.py)."""
