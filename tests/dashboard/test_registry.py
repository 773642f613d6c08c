"""The registry: config/workflow.json read into steps, each problem on its step, in one line."""
import pytest
from dash_support import ROOT, step, write_workflow

from dashboard.registry import load_registry


def test_registry_reports_each_problem_on_its_step(tmp_path):
    steps = [
        step("good", "progress.py"),
        step("badregex", "progress.py", progress_patterns={"total": "("}),
        step("badvenv", "progress.py", venv="nope_env"),
        step("noscript", "does_not_exist.py"),
        step("nocwd", "progress.py", cwd="no/such/folder"),
        step("badplace", "progress.py", "{home}"),
        step("Bad Id", "progress.py"),
        step("good", "progress.py"),
    ]
    steps.append(step("ghost", "progress.py", venv="ghost_env"))
    reg = load_registry(write_workflow(tmp_path / "wf.json", steps, {"env": {}, "ghost_env": {"setup": "make ghost"}}), ROOT)
    problems = {s.id: list(s.problems) + reg.readiness(s)[0] for s in reg.steps}
    assert reg.readiness(reg.get("good"))[0] == []
    assert any("bad regex" in p for p in problems["badregex"])
    assert any("venv 'nope_env' is unknown" in p for p in problems["badvenv"])
    assert any("does_not_exist.py does not exist" in p for p in problems["noscript"])
    assert any("working folder no/such/folder does not exist" in p for p in problems["nocwd"])
    assert any("unknown placeholder {home}" in p for p in problems["badplace"])
    assert any("must be lower-case" in p for p in problems["step-7"])
    assert any("good: the id is used by an earlier step" in p for p in problems["step-8"])
    ghost_problems, fix = reg.readiness(reg.get("ghost"))
    assert fix == "make ghost"
    assert "virtualenv ghost_env/ is missing" in ghost_problems[0] and "make ghost" in ghost_problems[0]
    for plist in problems.values():
        for p in plist:
            assert "\n" not in p


@pytest.mark.parametrize("content, message", [
    (None, "file not found"),
    ("{not json", "cannot read it as JSON"),
    ('{"steps": 3}', "expected an object with a \"steps\" list"),
])
def test_unreadable_workflow_file_is_one_line(tmp_path, content, message):
    path = tmp_path / "wf.json"
    if content is not None:
        path.write_text(content)
    reg = load_registry(path, ROOT)
    assert reg.steps == [] and len(reg.problems) == 1 and message in reg.problems[0]


def test_the_real_workflow_file_is_valid():
    reg = load_registry(ROOT / "config" / "workflow.json", ROOT)
    assert reg.problems == []
    assert {s.id for s in reg.steps} >= {"step3"}
    for s in reg.steps:
        assert s.problems == (), s.problems
    step3 = reg.get("step3")
    assert step3.venv == "transnet_env" and "gpu" in step3.resources


@pytest.mark.parametrize("make, words", [
    (lambda bin_dir: (bin_dir / "python").symlink_to(bin_dir / "python"), "is a loop of symbolic links"),
    (lambda bin_dir: (bin_dir / "python").symlink_to("/nowhere/python3"), "is a link to /nowhere/python3"),
])
def test_a_broken_venv_is_not_called_missing_and_its_fix_rebuilds_it(tmp_path, make, words):
    (tmp_path / "loop_env" / "bin").mkdir(parents=True)
    make(tmp_path / "loop_env" / "bin")
    wf = write_workflow(tmp_path / "wf.json", [step("s", "progress.py", venv="loop_env")],
                        {"loop_env": {"setup": "make setup"}})
    problems, fix = load_registry(wf, tmp_path).readiness(load_registry(wf, tmp_path).get("s"))
    assert problems[0].startswith("virtualenv loop_env/ is broken (loop_env/bin/python ") and words in problems[0]
    assert fix == "rm -rf loop_env && make setup"
