"""`make run` and `make run-step3` with any folder name: app.py and STEP3 get the
folder as named, nothing is written outside it, and only the demo folder
(projects/) gets the sample video.

Each test runs the real make on the real Makefile, app.py and STEP3, in a
stand-in repository under tmp_path: the venvs, requirements, scripts, steps
and config are links to this checkout's (only read), app.py and the dashboard
package are copied (the dashboard keeps its logs/ and data/ next to its own
files: copied, they stay under tmp_path, away from the checkout's run history,
whose running steps a second dashboard would mark interrupted). Everything
under tmp_path (the stand-in repository, and the folder holding the user's
folder) is listed before and after. MAKEFILE_UNDER_TEST=/path/to/Makefile
tests another Makefile (an older one) the same way.
"""
import hashlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = Path(os.environ.get("MAKEFILE_UNDER_TEST") or ROOT / "Makefile").resolve()
LINKED = ["env", "transnet_env", "requirements", "stepkit", "scripts", "workflow_scripts", "config",
          "templates", "static"]
# What a run of the dashboard or of STEP3 writes in the repository by design (git-ignored).
RUNTIME = ("repo/logs", "repo/data")
MAKE_VARIABLES = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "PROJECTS_DIR", "HOST", "PORT", "PYTHON",
                  "DASHBOARD_TOKEN"}
STARTUP_S = 90  # a busy 2-core machine: Flask's imports alone can take seconds

# A folder's name, and how PROJECTS_DIR names it: "abs" (tmp_path/home/NAME),
# "slash" (the same with a trailing slash) or "rel" (relative to the repository:
# a leading dash can only start a relative path).
CASES = [
    pytest.param("My Vidéos 🎬", "abs", id="spaces-unicode"),
    pytest.param("Bob's clips", "abs", id="single-quote"),
    pytest.param('the "best" cuts', "abs", id="double-quote"),
    pytest.param("cost $HOME $(PWD) ${USER} $$ $", "abs", id="dollar"),
    pytest.param("back\\slash\\", "abs", id="backslash"),
    pytest.param("a#b%c:d;e&f*g,h(i)j=k|l~m`n`<o>", "abs", id="make-and-shell-specials"),
    pytest.param("two\nlines", "abs", id="newline"),
    pytest.param("clips", "slash", id="trailing-slash"),
    pytest.param("My Vidéos 🎬", "slash", id="spaces-trailing-slash"),
    pytest.param("-clips", "rel", id="leading-dash"),
    pytest.param("--help", "rel", id="leading-dashes-help"),
]


def make_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in MAKE_VARIABLES}
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONIOENCODING="utf-8", LC_ALL="C.UTF-8")
    return env


def make(repo: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["make", *args], cwd=repo, env=make_env(), capture_output=True, encoding="utf-8",
                          errors="replace", timeout=timeout)


def snapshot(top: Path) -> dict:
    """Every entry under ``top`` (links listed, not followed) -> what it is; files by content."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = str(path.relative_to(top))
            if path.is_symlink():
                found[rel] = "link to " + os.readlink(path)
            elif path.is_dir():
                found[rel] = "folder"
            else:
                found[rel] = "file " + hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def changed(before: dict, after: dict, allowed=RUNTIME) -> list:
    """What differs between two snapshots, but for the repository's runtime files."""
    paths = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    return sorted(p for p in paths if not any(p == a or p.startswith(a + "/") for a in allowed))


@pytest.fixture
def repo(tmp_path) -> Path:
    """The stand-in repository, its venvs up to date (so make rebuilds nothing)."""
    missing = [c for c in ("ffmpeg", "ffprobe", "chromium", "chromedriver") if shutil.which(c) is None]
    if missing:
        pytest.skip(f"make setup would install Debian packages first ({', '.join(missing)}): run make setup")
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in LINKED:
        (repo / name).symlink_to(ROOT / name)
    (repo / "Makefile").symlink_to(MAKEFILE)
    shutil.copy2(ROOT / "app.py", repo / "app.py")
    shutil.copytree(ROOT / "dashboard", repo / "dashboard", ignore=shutil.ignore_patterns("__pycache__"))
    if make(repo, "-q", "env/.installed", "transnet_env/.installed").returncode != 0:
        pytest.skip("the venvs are not up to date (make would rebuild them): run make setup")
    return repo


@pytest.fixture
def user_folder(tmp_path, repo):
    """(the user's folder, holding a video and a note, PROJECTS_DIR naming it) for (name, form)."""
    def build(name: str, form: str, video: bool = True) -> tuple[Path, str]:
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        (home / "My").write_text("a file of the user's, named like a first word\n")
        folder = (repo if form == "rel" else home) / name
        folder.mkdir()
        (folder / "notes.txt").write_text("the user's notes\n")
        if video:
            (folder / "clip.mp4").write_bytes(b"the user's video")
        value = {"abs": str(folder), "slash": str(folder) + "/", "rel": name}[form]
        return folder, value
    return build


class MadeDashboard:
    """`make run ... PORT=0` running: its output read line by line, stopped with SIGTERM."""

    def __init__(self, repo: Path, *variables: str):
        self.proc = subprocess.Popen(["make", "run", "PORT=0", *variables], cwd=repo, env=make_env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, encoding="utf-8",
                                     errors="replace", start_new_session=True)
        self.lines = []
        self._queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _next(self, deadline: float) -> str:
        try:
            line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no dashboard line in time; output: {self.lines}") from None
        if line is None:
            raise AssertionError(f"make ended (rc {self.proc.wait()}) before the dashboard's line; "
                                 f"output: {self.lines}")
        self.lines.append(line)
        return line

    def wait_line(self, timeout: float = STARTUP_S) -> str:
        """app.py's first line, "Dashboard on ... Ctrl-C stops it." (on several lines
        when the folder's name holds a newline)."""
        deadline = time.monotonic() + timeout
        line = self._next(deadline)
        while not line.startswith("Dashboard on"):
            line = self._next(deadline)
        while not line.endswith("Ctrl-C stops it."):
            line += "\n" + self._next(deadline)
        return line

    def stop(self):
        if self.proc.poll() is None or self._reader.is_alive():  # stopped already: its group is gone
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # make and app.py, as Ctrl-C in a terminal
            except ProcessLookupError:
                pass
        self._reader.join(30)  # the output ends when app.py has stopped
        if self._reader.is_alive():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reader.join(10)
        self.proc.wait(10)
        while not self._queue.empty():
            line = self._queue.get_nowait()
            if line is not None:
                self.lines.append(line)


@pytest.fixture
def made_dashboards():
    started = []

    def start(repo, *variables):
        started.append(MadeDashboard(repo, *variables))
        return started[-1]

    yield start
    for d in started:
        d.stop()


def dashboard_line(projects_dir: Path) -> re.Pattern:
    return re.compile(r"Dashboard on http://127\.0\.0\.1:(\d+)/ \(projects folder "
                      + re.escape(str(projects_dir)) + r"\); Ctrl-C stops it\.\Z")


def api_projects(port: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/projects", timeout=30) as r:
        return json.loads(r.read())


@pytest.mark.parametrize("name, form", CASES)
def test_make_run_gives_app_py_the_folder_and_writes_nothing_outside_it(tmp_path, repo, user_folder,
                                                                        made_dashboards, name, form):
    folder, value = user_folder(name, form)
    before = snapshot(tmp_path)
    dashboard = made_dashboards(repo, f"PROJECTS_DIR={value}")
    line = dashboard.wait_line()
    found = dashboard_line(folder.resolve()).match(line)
    assert found, f"app.py got another folder: {line!r}, not {str(folder.resolve())!r}"
    listed = api_projects(found.group(1))
    assert listed["projects_dir"] == str(folder.resolve())
    assert [v["path"] for v in listed["videos"]] == ["clip.mp4"]  # the user's video, no demo
    dashboard.stop()
    assert "Dashboard stopped." in dashboard.lines
    assert changed(before, snapshot(tmp_path)) == []
    assert (repo / "logs" / "app.log").is_file()  # the runtime files went where they belong


@pytest.mark.parametrize("name, form", CASES)
def test_make_run_step3_gives_step3_the_folder_and_writes_nothing_outside_it(tmp_path, repo, user_folder,
                                                                            name, form):
    folder, value = user_folder(name, form, video=False)
    before = snapshot(tmp_path)
    done = make(repo, "run-step3", f"PROJECTS_DIR={value}", timeout=STARTUP_S)
    config = [json.loads(line.split(": ", 1)[1]) for line in done.stdout.split("\n")
              if line.startswith("CONFIG_EFFECTIVE: ")]
    assert config and config[0]["input_dir"] == value, done.stdout + done.stderr
    assert "TOTAL_VIDEOS_TO_PROCESS: 0" in done.stdout.split("\n")  # no demo video in the user's folder
    assert done.returncode == 0, done.stdout + done.stderr
    assert changed(before, snapshot(tmp_path)) == []
    assert list((repo / "logs" / "step3").glob("transnet_*.log"))


@pytest.mark.parametrize("name, form", CASES)
def test_make_n_prints_the_commands_for_the_folder_and_writes_nothing(tmp_path, repo, user_folder, name, form):
    _, value = user_folder(name, form)
    before = snapshot(tmp_path)
    shown = make(repo, "-n", "run", "run-step3", "PORT=0", f"PROJECTS_DIR={value}")
    assert shown.returncode == 0, shown.stderr
    commands = shown.stdout.split("\n")
    assert "env/bin/python app.py --host='127.0.0.1' --port='0' --projects-dir=\"$PROJECTS_DIR\"" in commands
    assert "transnet_env/bin/python workflow_scripts/step3/run_transnet.py --input-dir=\"$PROJECTS_DIR\"" in commands
    assert "sample" not in shown.stdout  # no copy of the demo video for a folder of the user's
    assert changed(before, snapshot(tmp_path), allowed=()) == []


def sample_video_digest(repo: Path) -> str:
    path = subprocess.run(
        [str(repo / "transnet_env/bin/python"), "-c",
         "import sys; sys.path.insert(0, 'workflow_scripts/step3'); from shots.model import weights; "
         "print(weights.sample_video_path())"],
        cwd=repo, env=make_env(), capture_output=True, text=True, check=True).stdout.strip()
    return "file " + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_the_demo_video_goes_to_the_demo_folder_only_and_once(tmp_path, repo, user_folder, made_dashboards):
    folder, value = user_folder("videos", "abs")
    before = snapshot(tmp_path)
    done = make(repo, "setup", f"PROJECTS_DIR={value}")
    assert done.returncode == 0, done.stderr
    assert changed(before, snapshot(tmp_path), allowed=()) == []  # the user's folder gets nothing

    done = make(repo, "setup")  # the default folder: the demo folder
    assert done.returncode == 0, done.stderr
    after = snapshot(tmp_path)
    assert changed(before, after, allowed=()) == ["repo/projects", "repo/projects/demo",
                                                  "repo/projects/demo/sample.mp4"]
    assert after["repo/projects/demo/sample.mp4"] == sample_video_digest(repo)
    os.utime(repo / "projects/demo/sample.mp4", (1_000_000_000, 1_000_000_000))

    again = make(repo, "setup", "PROJECTS_DIR=projects")  # the same folder, named: nothing more to do
    assert again.returncode == 0 and "sample" not in again.stdout, again.stdout
    assert (repo / "projects/demo/sample.mp4").stat().st_mtime == 1_000_000_000

    dashboard = made_dashboards(repo)
    found = dashboard_line((repo / "projects").resolve()).match(dashboard.wait_line())
    assert found, dashboard.lines
    assert [v["path"] for v in api_projects(found.group(1))["videos"]] == ["demo/sample.mp4"]
    dashboard.stop()
    assert changed(after, snapshot(tmp_path)) == []


@pytest.mark.parametrize("target", ["run", "run-step3"])
@pytest.mark.parametrize("what", ["empty", "missing", "a-file"])
def test_a_projects_dir_that_is_no_folder_is_one_line_and_nothing_is_written(tmp_path, repo, target, what):
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("not a folder\n")
    value = {"empty": "", "missing": str(home / "My Vidéos"), "a-file": str(home / "notes.txt")}[what]
    before = snapshot(tmp_path)
    done = make(repo, target, "PORT=0", f"PROJECTS_DIR={value}", timeout=STARTUP_S)
    assert done.returncode == 2
    lines = done.stderr.strip("\n").split("\n")
    if what == "empty":
        assert lines[0].startswith("error: PROJECTS_DIR is empty: name the folder of your videos"), done.stderr
    else:
        assert lines[0] == (f"error: PROJECTS_DIR={value} is not a folder "
                            "(name an existing folder of videos; it is not created)"), done.stderr
    assert all(line.startswith("make: *** ") for line in lines[1:]), done.stderr
    assert "app.py" not in done.stdout and "run_transnet" not in done.stdout  # checked before anything runs
    assert changed(before, snapshot(tmp_path), allowed=()) == []
