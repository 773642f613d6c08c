"""STEP3's result format read from the dashboard's venv, with stepkit's reader,
against the real sample of docs/samples/: the sample follows the format, and
each way a document can be wrong is one line naming the field and the cause.
(tests/step3/test_result_format.py checks, in STEP3's venv, that a real run
writes documents with exactly the sample's fields.)"""
import copy
import csv
import hashlib
import io
import json
import re

import pytest
from dash_support import ROOT

from stepkit.result_check import OPTIONAL_FIELDS, ResultError, check_document, field_paths, load_result
from stepkit.scene_results import CSV_HEADER, FORMAT

SAMPLES = ROOT / "docs" / "samples"
SAMPLE_JSON = SAMPLES / "step3-result.sample.json"
SAMPLE_CSV = SAMPLES / "step3-result.sample.csv"
DOC = ROOT / "docs" / "result-format.md"


@pytest.fixture
def sample():
    return json.loads(SAMPLE_JSON.read_text(encoding="utf-8"))


def test_the_sample_follows_the_format(sample):
    assert sample["format"] == FORMAT == "step3-scenes/1"
    assert check_document(sample) == []
    assert load_result(SAMPLE_JSON) == sample


def test_the_sample_csv_is_the_one_its_json_names(sample):
    data = SAMPLE_CSV.read_bytes()
    assert hashlib.sha256(data).hexdigest() == sample["csv"]["sha256"]
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    assert rows[0] == CSV_HEADER == ["No", "Timecode In", "Timecode Out", "Frame In", "Frame Out"]
    assert rows[1:] == [[str(s["no"]), s["timecode_in"], s["timecode_out"], str(s["frame_in"]), str(s["frame_out"])]
                        for s in sample["scenes"]]
    assert data.endswith(b"\n") and b"\r" not in data and b'"' not in data


def test_every_field_is_documented_once_and_nothing_else():
    text = DOC.read_text(encoding="utf-8")
    table = text.split("<!-- fields:start -->", 1)[1].split("<!-- fields:end -->", 1)[0]
    documented = re.findall(r"^\| `([^`]+)` \|", table, flags=re.M)
    assert documented == field_paths()
    assert f'"format": "{FORMAT}"' in text


def edit(doc, path, value):
    """Set (or, with value=DELETE, remove) the field at a dotted path like 'scenes.1.frame_in'."""
    *parents, last = path.split(".")
    for part in parents:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    key = int(last) if isinstance(doc, list) else last
    if value is DELETE:
        del doc[key]
    else:
        doc[key] = value


DELETE = object()


@pytest.mark.parametrize("path, value, problem", [
    ("threshold", DELETE, "threshold: missing"),
    ("video.width", "wide", 'video.width: must be an integer >= 1, got "wide"'),
    ("video.width", True, "video.width: must be an integer >= 1, got true"),
    ("video.height", 0, "video.height: must be an integer >= 1, got 0"),
    ("video.identity.size", 1.5, "video.identity.size: must be an integer >= 0, got 1.5"),
    ("video.duration_s", -1, "video.duration_s: must be a number >= 0 or null, got -1"),
    ("video.frame_rate", "25", 'video.frame_rate: must be a rate "N/D", got "25"'),
    ("video.rotation", 90, "video.rotation: not a field of step3-scenes/1"),
    ("video", [], "video: must be an object, got []"),
    ("threshold", 1, "threshold: must be a number between 0 and 1 (exclusive), got 1"),
    ("threshold", "0.5", 'threshold: must be a number between 0 and 1 (exclusive), got "0.5"'),
    ("complete", False, "complete: must be true, got false"),
    ("scene_count", 3, "scene_count: 3 but scenes holds 2"),
    ("scenes", {}, "scenes: must be a list, got {}"),
    ("scenes.1", "2", 'scenes[1]: must be an object, got "2"'),
    ("scenes.1.no", 5, "scenes[1].no: 5 where 2 is due (scenes are numbered from 1, in order)"),
    ("scenes.1.frame_in", 40, "scenes[1].frame_in: 40 is not after the previous scene's frame_out 50"),
    ("scenes.0.frame_in", 60, "scenes[0].frame_in: 60 is after frame_out 50"),
    ("scenes.1.frame_out", 101, "scenes[1].frame_out: 101 is beyond the video's 100 frames"),
    ("scenes.1.timecode_in", "0:00:02", 'scenes[1].timecode_in: must be a timecode HH:MM:SS.mmm, got "0:00:02"'),
    ("scenes.1.timecode_in", "00:00:05.000",
     "scenes[1].timecode_in: 00:00:05.000 is after timecode_out 00:00:04.000"),
    ("model.weights_sha256", "A" * 64,
     f'model.weights_sha256: must be 64 lower-case hexadecimal digits, got "{"A" * 37}..."'),
    ("device", [], "device: must be a non-empty string or a list of them, got []"),
    ("torchscript", "no", 'torchscript: must be true or false, got "no"'),
    ("implementation", "winograd", 'implementation: must be a non-empty list of non-empty strings, got "winograd"'),
    ("timings.started_at", "yesterday", 'timings.started_at: must be an ISO 8601 time with its UTC offset, '
                                        'got "yesterday"'),
    ("timings.wall_s", None, "timings.wall_s: must be a number >= 0, got null"),
    ("predictions.single_frame.3", 1.5, "predictions.single_frame: must be a list of numbers from 0 to 1 "
                                        "(item 3 is 1.5)"),
    ("predictions.all_frames.99", DELETE, "predictions.all_frames: 99 values for the video's 100 frames"),
    ("csv.file", "cut-at-2s.txt", 'csv.file: must be a file name ending in .csv, got "cut-at-2s.txt"'),
])
def test_each_break_is_one_line_naming_the_field(sample, path, value, problem):
    broken = copy.deepcopy(sample)
    edit(broken, path, value)
    assert check_document(broken) == [problem]


def test_valid_variants_the_format_allows(sample):
    variants = [("video.duration_s", None), ("device", ["cpu", "cuda:0"]), ("precision", ["fp16", "fp32"]),
                ("scenes.1.frame_in", 53)]  # the frames of a gradual transition belong to no scene
    for path, value in variants:
        doc = copy.deepcopy(sample)
        edit(doc, path, value)
        assert check_document(doc) == [], path


def test_another_version_is_refused_in_one_line_without_judging_its_fields(sample):
    sample["format"] = "step3-scenes/2"
    sample["video"] = "whatever version 2 has"
    assert check_document(sample) == ['format: "step3-scenes/2" is not step3-scenes/1, the format this reader knows']
    del sample["format"]
    assert check_document(sample)[:1] == ['video: must be an object, got "whatever version 2 has"']
    assert "format: missing" in check_document(sample)


def test_not_a_document_at_all():
    assert check_document([1, 2]) == ["the document: must be an object, got [1, 2]"]
    assert check_document({}) == [f"{name}: missing" for name in field_paths()
                                  if "." not in name and name not in OPTIONAL_FIELDS]


def test_load_result_errors_are_one_line_naming_the_file(tmp_path, sample):
    def error_of(path):
        with pytest.raises(ResultError) as info:
            load_result(path)
        message = str(info.value)
        assert "\n" not in message and message.startswith(f"{path}: ")
        return message, info.value.problems

    missing = tmp_path / "gone.scenes.json"
    assert error_of(missing) == (f"{missing}: cannot read it: No such file or directory", [])
    half = tmp_path / "half.scenes.json"
    half.write_text('{"video": {"file": ')
    message, _ = error_of(half)
    assert message.startswith(f"{half}: not a result (not JSON: Expecting value: line 1")
    binary = tmp_path / "binary.scenes.json"
    binary.write_bytes(b"\xff\xfe\x00junk")
    assert error_of(binary)[0] == f"{binary}: not a result (not UTF-8 text)"
    nan = tmp_path / "nan.scenes.json"
    nan.write_text(SAMPLE_JSON.read_text().replace("0.965044", "NaN"))  # json reads NaN; the format has none
    assert error_of(nan)[0] == (f"{nan}: predictions.single_frame: must be a list of numbers from 0 to 1 "
                                f"(item 49 is nan)")
    broken = tmp_path / "broken.scenes.json"
    sample["threshold"] = 2
    del sample["timings"]
    broken.write_text(json.dumps(sample))
    message, problems = error_of(broken)
    assert message == (f"{broken}: threshold: must be a number between 0 and 1 (exclusive), got 2 "
                       f"(and 1 more problem(s))")
    assert problems == ["threshold: must be a number between 0 and 1 (exclusive), got 2", "timings: missing"]
    folder = tmp_path / "a.scenes.json"
    folder.mkdir()
    assert error_of(folder)[0] == f"{folder}: cannot read it: Is a directory"
