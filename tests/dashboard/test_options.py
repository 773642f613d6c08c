"""Run options: their declarations in workflow.json (checked by the registry), the values
submitted for them, and the command line they become."""
import json

import pytest
from dash_support import ROOT, WORKFLOW, step, write_workflow

from dashboard import options as opts
from dashboard.history import SCHEMA_VERSION, RunStore
from dashboard.registry import load_registry

THRESHOLD = {"name": "threshold", "label": "Threshold", "type": "number", "default": 0.5, "min": 0, "max": 1,
             "exclusive": True, "flag": "--threshold"}
WORKERS = {"name": "num_workers", "label": "Decoder workers", "type": "integer", "default": 1, "min": 1,
           "max": 64, "auto": True, "flag": "--num-workers"}
DEVICE = {"name": "device", "type": "choice", "choices": ["auto", "cpu", "cuda"], "default": "auto",
          "flag": "--device"}
FORCE = {"name": "force", "label": "Force re-run", "type": "boolean", "default": False, "flag": "--force"}
VIDEOS = {"name": "videos", "label": "Videos", "type": "videos", "default": None, "flag": "--videos"}


def declared(*entries):
    found, problems = opts.parse_declarations(list(entries))
    assert problems == []
    return found


@pytest.mark.parametrize("entry, words", [
    ({**THRESHOLD, "default": 1.5}, "option threshold: default: must be between 0 and 1 (exclusive), got 1.5"),
    ({**THRESHOLD, "default": 1}, "option threshold: default: must be between 0 and 1 (exclusive), got 1"),
    ({**THRESHOLD, "type": "float"}, "option threshold: type 'float' must be one of number"),
    ({**THRESHOLD, "flag": "-t"}, "option threshold: flag '-t' must be a long option"),
    ({**THRESHOLD, "min": 2}, "option threshold: min must be below max"),
    ({**THRESHOLD, "colour": "red"}, "option threshold: unknown key(s): colour"),
    ({**THRESHOLD, "name": "Thres hold"}, "option #1: name 'Thres hold' must be lower-case"),
    ({**DEVICE, "default": "tpu"}, "option device: default: must be one of auto, cpu, cuda, got \"tpu\""),
    ({**DEVICE, "choices": []}, "option device: choices must be a non-empty list of strings"),
    ({**FORCE, "default": "no"}, "option force: default: must be true or false"),
    ({**FORCE, "min": 1}, "option force: min applies to numbers only"),
    ({**WORKERS, "default": 2.5}, "option num_workers: default: must be a whole number or \"auto\""),
    ({**VIDEOS, "default": ["a.mp4"]}, "option videos: default must be null (every video)"),
    ("threshold", "option #1: must be an object"),
])
def test_a_bad_declaration_is_one_line_naming_the_step_and_the_option(tmp_path, entry, words):
    wf = write_workflow(tmp_path / "wf.json", [step("good", "progress.py"),
                                               step("opt", "progress.py", options=[entry])])
    reg = load_registry(wf, ROOT)
    assert reg.get("good").problems == ()
    problems = reg.get("opt").problems
    assert len(problems) == 1 and "\n" not in problems[0], problems
    assert problems[0].startswith("opt: ") and words in problems[0], problems[0]
    assert reg.readiness(reg.get("opt"))[0] == list(problems)  # such a step cannot run


def test_options_must_be_a_list_and_each_name_is_declared_once(tmp_path):
    wf = write_workflow(tmp_path / "wf.json", [step("a", "progress.py", options={"threshold": 0.5}),
                                               step("b", "progress.py", options=[FORCE, FORCE])])
    reg = load_registry(wf, ROOT)
    assert "a: options must be a list" in reg.get("a").problems[0]
    assert reg.get("b").problems == ("b: option force: declared twice",)


def test_the_shipped_workflow_declares_step3s_options_with_its_config_defaults():
    reg = load_registry(WORKFLOW, ROOT)
    step3 = reg.get("step3")
    names = [o.name for o in step3.options]
    assert {"threshold", "force", "videos", "device", "mixed_precision", "num_workers"} <= set(names)
    assert reg.get("inventory").options == ()
    # Only non-default values are passed: the declared defaults must be those of STEP3's own config file.
    config = json.loads((ROOT / "config" / "step3_transnet.json").read_text())
    for option in step3.options:
        assert option.default == config[option.name], option.name


def test_values_are_checked_and_the_left_out_take_their_defaults(tmp_path):
    options = declared(THRESHOLD, WORKERS, DEVICE, FORCE, VIDEOS)
    assert opts.resolve(options, None, tmp_path) == {
        "threshold": 0.5, "num_workers": 1, "device": "auto", "force": False, "videos": None}
    assert opts.resolve(options, {"threshold": 0.3, "num_workers": "auto"}, tmp_path)["num_workers"] == "auto"
    for submitted, words in [
        ({"treshold": 0.3}, "unknown option 'treshold' (this step's options: threshold, num_workers"),
        ({"threshold": 0}, "option threshold: must be between 0 and 1 (exclusive), got 0"),
        ({"threshold": "0.3"}, "option threshold: must be a number, got \"0.3\""),
        ({"threshold": True}, "option threshold: must be a number"),
        ({"threshold": float("nan")}, "option threshold: must be a finite number"),
        ({"num_workers": 65}, "option num_workers: must be between 1 and 64, got 65"),
        ({"num_workers": 2.0}, "option num_workers: must be a whole number or \"auto\""),
        ({"device": "CUDA"}, "option device: must be one of auto, cpu, cuda"),
        ({"force": "yes"}, "option force: must be true or false"),
        ({"videos": []}, "option videos: must be null (every video) or a non-empty list"),
        ({"videos": "a.mp4"}, "option videos: must be null"),
        ({"videos": ["nowhere.mp4"]}, "option videos: 'nowhere.mp4' is not a video of the projects folder"),
        ([1], "options must be an object"),
    ]:
        with pytest.raises(opts.OptionError) as caught:
            opts.resolve(options, submitted, tmp_path)
        assert words in str(caught.value) and "\n" not in str(caught.value), submitted


def test_only_non_default_values_become_arguments():
    options = declared(THRESHOLD, WORKERS, DEVICE, FORCE, VIDEOS)
    defaults = {"threshold": 0.5, "num_workers": 1, "device": "auto", "force": False, "videos": None}
    assert opts.to_argv(options, defaults) == []
    assert opts.to_argv(options, None) == []
    chosen = {"threshold": 0.3, "num_workers": "auto", "device": "cpu", "force": True, "videos": ["a, b.mp4", "é.mov"]}
    assert opts.to_argv(options, chosen) == [
        "--threshold=0.3", "--num-workers=auto", "--device=cpu", "--force", '--videos=["a, b.mp4", "é.mov"]']
    on = declared({**FORCE, "default": True})
    assert opts.to_argv(on, {"force": False}) == ["--no-force"]
    assert opts.summary(options, chosen) == (
        "Threshold 0.3 · Decoder workers auto · device cpu · Force re-run · Videos: a, b.mp4, é.mov")
    assert opts.summary(options, defaults) == "" and opts.summary(options, None) is None
    assert opts.summary(options, {**defaults, "videos": ["1", "2", "3", "4", "5"]}) == "Videos: 1, 2, 3 and 2 more"


def test_a_history_of_schema_4_gains_the_options_column(tmp_path):
    import sqlite3
    path = tmp_path / "v4.sqlite3"
    store = RunStore(path)
    store.close()
    db = sqlite3.connect(path)  # back to what schema 4 wrote: no options column
    db.execute("ALTER TABLE runs DROP COLUMN options")
    db.execute("INSERT INTO runs (step_id, status, started_at) VALUES ('step3', 'succeeded', 1.0)")
    db.execute("PRAGMA user_version=4")
    db.commit()
    db.close()
    store = RunStore(path)
    try:
        assert store.get(1)["options"] is None
        run_id = store.create("step3", 2.0, options={"threshold": 0.3})
        assert store.get(run_id)["options"] == {"threshold": 0.3}
    finally:
        store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 5
    db.close()
