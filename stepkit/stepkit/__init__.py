"""What every workflow step (and the dashboard) shares, standard library only.

Installed into each venv by ``make setup`` (``pip install -e stepkit``), so a
step's script and the dashboard import the same rules:

- ``progress_lines``: the progress-line emitter and the standard patterns that
  read it (docs/progress-protocol.md);
- ``videos``: which files are videos and how a projects folder is searched;
- ``probe``: the ffprobe command and which of a file's streams is its video;
- ``atomic``: writing a file so that it is either the old one or the whole new one;
- ``scene_results``: STEP3's result files, their names and format
  (docs/result-format.md).
"""
