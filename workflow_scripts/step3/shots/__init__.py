"""STEP3: shot-boundary detection with TransNetV2.

The layout (see README.md, Architecture): config.py (the options) ->
driver.py (one run: plan.py finds the videos, an executor analyses them,
result_writer.py writes the results; only the driver prints progress lines)
-> executors/local.py (scheduler.py hands decoding tasks to a frame source
from frames/ and reads the frames back into windows, batching.py feeds them
to the model from model/ in an inference thread; video_job.py is one video's
state, windows.py and scenes.py the official windowing and scene rule).
"""
