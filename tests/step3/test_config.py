"""Configuration: defaults < JSON < environment < command line, and one-line errors."""
import json
import re
from dataclasses import asdict, fields

import pytest

from conftest import REPO, run_step3
from shots.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config


def write(tmp_path, data) -> str:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def test_defaults():
    c = Config()
    assert (c.num_workers, c.torchscript, c.torchscript_auto_fallback, c.device, c.threshold,
            c.mixed_precision) == (1, False, True, "auto", 0.5, False)


def test_shipped_config_file_holds_the_defaults():
    assert load_config([], environ={}) == Config()


def test_priority_defaults_json_cli(tmp_path):
    path = write(tmp_path, {"threshold": 0.3, "num_workers": 3, "torchscript": True})
    c = load_config(["--config", path, "--num-workers", "2", "--no-torchscript"], environ={})
    assert c.threshold == 0.3          # from the file
    assert c.num_workers == 2          # the command line wins
    assert c.torchscript is False      # --no- form
    assert c.batch_size == "auto"      # default


# For every key of the shipped file, another valid value, as the JSON file would hold it:
# a flag that were ignored or mis-read could not give it back.
OTHER_VALUES = {
    "input_dir": "elsewhere/videos",
    "extensions": [".mp4", ".mpg"],
    "threshold": 0.3,
    "device": "cuda:1",
    "batch_size": 4,
    "num_workers": "auto",
    "decoder_threads": 2,
    "segment_seconds": 2.5,
    "segment_frames": 500,
    "readahead_frames": 0,
    "cpu_threads": 3,
    "mixed_precision": True,
    "cpu_fast": False,
    "torchscript": True,
    "torchscript_auto_fallback": False,
    "force": True,
    "dry_run": True,
    "weights_path": "other/weights.pth",
    "log_dir": "elsewhere/logs",
    "videos": ["a.mp4", "sub/b.mp4"],
    "decoder": "nvdec",
    "executor": "ray",
    "ray_address": "ray://head:10001",
}


def shipped() -> dict:
    return json.loads(DEFAULT_CONFIG_PATH.read_text())


def as_flags(key: str, value) -> list:
    """The command line that says ``key: value``, written from the README's rules."""
    flag = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        return [flag] if value else ["--no-" + flag[2:]]
    if isinstance(value, list):
        return [flag, ",".join(value)]
    return [flag, str(value)]


def test_the_shipped_file_holds_every_key():
    assert set(shipped()) == set(OTHER_VALUES) == {f.name for f in fields(Config)}


@pytest.mark.parametrize("key", sorted(OTHER_VALUES))
def test_every_key_reaches_the_same_value_through_its_flag_as_through_the_file(tmp_path, key):
    values = [v for v in (shipped()[key], OTHER_VALUES[key]) if v is not None]  # no flag says null
    assert OTHER_VALUES[key] != shipped()[key]
    for value in values:
        from_file = load_config(["--config", write(tmp_path, {key: value})], environ={})
        from_flag = load_config(as_flags(key, value), environ={})
        assert getattr(from_flag, key) == getattr(from_file, key)
        assert asdict(from_flag) == dict(asdict(Config()), **{key: getattr(from_file, key)})  # nothing else moved
    assert getattr(from_flag, key) != getattr(Config(), key)


@pytest.mark.parametrize("key", [k for k, v in Config().__dict__.items() if isinstance(v, bool)])
def test_every_switch_has_both_forms(key):
    flag = "--" + key.replace("_", "-")
    assert getattr(load_config([flag], environ={}), key) is True
    assert getattr(load_config(["--no-" + flag[2:]], environ={}), key) is False


def readme_step3() -> str:
    text = (REPO / "README.md").read_text()
    return text[text.index("<!-- step3:start -->"):text.index("<!-- step3:end -->")]


def test_every_key_in_the_readme_s_options_table_has_a_flag_that_parses():
    table = readme_step3().split("| key | default | meaning |", 1)[1].split("\n\n", 1)[0]
    documented = [k for row in table.splitlines()[2:] for k in re.findall(r"`(\w+)`", row.split("|")[1])]
    assert len(documented) >= 10 and set(documented) <= set(OTHER_VALUES)
    for key in documented:
        assert getattr(load_config(as_flags(key, OTHER_VALUES[key]), environ={}), key) != getattr(Config(), key)


def test_every_command_line_the_readme_shows_parses():
    shown = set(re.findall(r"`(--[a-z]+(?:-[a-z]+)*(?: [^`-][^`]*)?)`", readme_step3())) - {"--help"}
    assert {"--batch-size 4", "--extensions mp4,mpg", "--no-cpu-fast"} <= shown
    for example in shown:
        load_config(example.split(), environ={})


@pytest.mark.parametrize("args", [["--thresold", "0.3"], ["--thresh", "0.3"], ["--cpu-fast", "--gpu-fast"]])
def test_an_unknown_flag_is_refused(args):
    with pytest.raises(ConfigError, match="unrecognized arguments: --"):
        load_config(args, environ={})


def test_command_line_values_are_read_as_their_json_types():
    c = load_config(["--batch-size", "4", "--num-workers", "auto", "--decoder-threads", "2",
                     "--extensions", "mp4,.MPG"], environ={})
    assert (c.batch_size, c.num_workers, c.decoder_threads, c.extensions) == (4, "auto", 2, [".mp4", ".mpg"])


def test_dry_run_from_environment_and_cli_override():
    assert load_config([], environ={"DRY_RUN": "1"}).dry_run is True
    assert load_config(["--no-dry-run"], environ={"DRY_RUN": "1"}).dry_run is False


@pytest.mark.parametrize("data, message", [
    ({"thresold": 0.5}, "unknown key 'thresold'"),
    ({"threshold": "high"}, "'threshold' must be a number between 0 and 1, got 'high'"),
    ({"threshold": 1.5}, "'threshold' must be between 0 and 1 (exclusive), got 1.5"),
    ({"num_workers": 0}, "'num_workers' must be between 1 and 64, got 0"),
    ({"num_workers": 2.5}, "'num_workers' must be an integer >= 1 or \"auto\", got 2.5"),
    ({"batch_size": "4"}, "'batch_size' must be an integer >= 1 or \"auto\", got '4'"),
    ({"extensions": ".mp4,.mov"}, "'extensions' must be a non-empty list of extensions"),
    ({"batch_size": -1}, "'batch_size' must be between 1 and 4096, got -1"),
    ({"torchscript": "yes"}, "'torchscript' must be true or false, got 'yes'"),
    ({"device": "tpu"}, "'device' must be \"auto\", \"cpu\", \"cuda\" or \"cuda:N\", got 'tpu'"),
    ("[1, 2]", "must hold a JSON object, got list"),
    ("{not json", "is not valid JSON"),
])
def test_bad_config_file(tmp_path, data, message):
    with pytest.raises(ConfigError) as info:
        load_config(["--config", write(tmp_path, data)], environ={})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("args, message", [
    (["--threshold", "abc"], "invalid float value: 'abc'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--thresh", "0.3"], "unrecognized arguments: --thresh"),  # no abbreviations
    (["--num-workers", "many"], "'num_workers' must be an integer >= 1 or \"auto\", got 'many'"),
    (["--batch-size", "0"], "'batch_size' must be between 1 and 4096, got 0"),
])
def test_bad_command_line_exits_2_with_one_line(args, message, tmp_path):
    proc = run_step3(*args, "--input-dir", tmp_path, timeout=120)
    assert proc.returncode == 2
    out = proc.stdout.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("ERROR: config: ") and message in out[0]
    assert "Traceback" not in proc.stderr


def test_bad_config_file_exits_2(tmp_path):
    proc = run_step3("--config", write(tmp_path, {"device": 3}), "--input-dir", tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout.strip() == (f"ERROR: config: 'device' must be \"auto\", \"cpu\", \"cuda\" or \"cuda:N\", "
                                   f"got 3 (in {tmp_path / 'c.json'})")


def test_effective_config_is_printed(tmp_path):
    proc = run_step3("--input-dir", tmp_path, "--threshold", "0.4", "--log-dir", tmp_path / "logs", timeout=120)
    assert proc.returncode == 0
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("CONFIG_EFFECTIVE: "))
    effective = json.loads(line[len("CONFIG_EFFECTIVE: "):])
    assert effective["threshold"] == 0.4 and effective["num_workers"] == 1
    assert set(effective) == set(Config().__dict__)


def test_videos_takes_a_json_list_for_names_with_commas():
    assert load_config(["--videos", '["a,b.mp4", "c.mp4"]'], environ={}).videos == ["a,b.mp4", "c.mp4"]
    with pytest.raises(ConfigError, match="videos"):
        load_config(["--videos", '["a.mp4"'], environ={})


@pytest.mark.parametrize("key, value", [("decoder", "gpu"), ("executor", "slurm"), ("ray_address", "no address"),
                                        ("videos", [])])
def test_the_engine_keys_refuse_what_they_do_not_know(tmp_path, key, value):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(["--config", write(tmp_path, {key: value})], environ={})
