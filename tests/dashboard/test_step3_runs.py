"""The real STEP3, run by the app on a short generated clip (the real workflow file)."""
import shutil
import subprocess

import pytest
from dash_support import WORKFLOW

pytestmark = pytest.mark.slow


@pytest.fixture
def clip(paths):
    """A 4 s clip with one cut (test pattern, then colour bars) in projects/demo/."""
    demo = paths["projects"] / "demo"
    demo.mkdir()
    path = demo / "clip.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y",
                    "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=2",
                    "-f", "lavfi", "-i", "smptehdbars=size=160x90:rate=25:duration=2",
                    "-filter_complex", "[0][1]concat=n=2:v=1", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)],
                   check=True, timeout=60)
    return path


def run_step3(app, clip):
    """One STEP3 run to its end; its results removed first, so that it does the work again."""
    for result in clip.parent.glob("clip.*"):
        if result != clip:
            result.unlink()
    run = app.extensions["dashboard"].runner.launch("step3")
    assert run.done.wait(300), "STEP3 did not end within 300 s"
    return run.snapshot()


def test_step3_s_own_exit_is_no_warning(make_app, paths, clip):
    """STEP3's decoders start multiprocessing's resource tracker, which exits just
    after STEP3 does: that is not a process left behind. Three runs, as the race
    between the two exits does not go the same way every time."""
    shutil.copy(WORKFLOW, paths["workflow"])
    app = make_app(None)
    for _ in range(3):
        snap = run_step3(app, clip)
        assert snap["status"] == "succeeded", snap
    app_log = (paths["logs"] / "app.log").read_text()
    assert app_log.count("step3 ended: succeeded") == 3
    assert "left behind" not in app_log and "WARNING" not in app_log


def test_step3_s_card_in_words(make_app, paths, clip):
    """The result is a sentence; the box shows STEP3's meaningful lines, each whole."""
    shutil.copy(WORKFLOW, paths["workflow"])
    app = make_app(None)
    snap = run_step3(app, clip)
    assert snap["outcome"] == "Done: 1 video analysed, 2 scenes" and snap["reason"] == "exit code 0"
    card = app.test_client().get("/api/steps/step3").get_json()["run"]
    lines = card["last_lines"]
    assert not [line for line in lines if line.startswith("FRAMES:")]
    config = next(line for line in lines if line.startswith("CONFIG_EFFECTIVE: "))
    assert len(config) <= 160 and config.endswith(", …}") and '"input_dir": ' in config
    assert "SUCCESS: 1/1: demo/clip.mp4 -> demo/clip.csv (2 scenes)" in lines
    assert "SUMMARY: 1/1 succeeded, 0 failed, 0 skipped" in lines
    app.extensions["dashboard"].close()
    again = make_app(None).test_client()  # after a restart: the same words, the same lines from the log
    run = again.get("/api/steps/step3").get_json()["run"]
    assert run["outcome"] == snap["outcome"] and run["last_lines"] == lines
