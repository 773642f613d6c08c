"""Configuration: defaults < JSON < environment < command line, and one-line errors."""
import json

import pytest

from conftest import run_step3
from shots.config import Config, ConfigError, load_config


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


def test_every_key_has_a_flag():
    from shots.config import build_parser
    from dataclasses import fields
    dests = {a.dest for a in build_parser()._actions}
    assert {f.name for f in fields(Config)} <= dests


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
