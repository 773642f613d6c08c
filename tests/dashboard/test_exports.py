"""Every export parsed back and compared frame for frame with its scene list,
at every rate the exports support (29.97 and 59.94 drop-frame included):
the EDL and the FCP7 XML through OpenTimelineIO's CMX3600 and FCP adapters,
the .otio through OpenTimelineIO, the FCPXML with an XML parser."""
import csv
import io
import xml.etree.ElementTree as ET
from fractions import Fraction

import opentimelineio as otio
import pytest
from results_support import RATES, timeline

from dashboard.results.exports import renderer
from dashboard.results.timecode import from_timecode, rate_of, to_timecode

EVIL = "<img src=x onerror=alert(1)> & \"quotes\" 'x'\n.mp4"


def clips_of(track):
    """[(source first frame 0-based, frames, record first frame)] of the clips, gaps skipped."""
    out = []
    for item in track:
        if isinstance(item, otio.schema.Clip):
            rate = item.source_range.start_time.rate
            out.append((round(item.source_range.start_time.value), round(item.source_range.duration.value),
                        round(item.range_in_parent().start_time.rescaled_to(rate).value)))
    return out


def expected(tl):
    return [(a - 1, b - a + 1, a - 1) for a, b in tl.scenes]


@pytest.mark.parametrize("rate_name", list(RATES))
def test_edl_read_back_by_otio_cmx3600_frame_for_frame(rate_name):
    tl = timeline(rate_name)
    text = renderer("edl")(tl).decode()
    assert ("FCM: DROP FRAME" in text) == rate_name.endswith("DF")
    parsed = otio.adapters.read_from_string(text, "cmx_3600", rate=float(tl.rate.exact))
    assert clips_of(parsed.tracks[0]) == expected(tl)


@pytest.mark.parametrize("rate_name", list(RATES))
def test_fcp7_xml_read_back_by_otio_fcp_adapter_frame_for_frame(rate_name):
    tl = timeline(rate_name)
    parsed = otio.adapters.read_from_string(renderer("fcp7")(tl).decode(), "fcp_xml")
    track = parsed.tracks[0]
    assert clips_of(track) == expected(tl)
    clip = next(i for i in track if isinstance(i, otio.schema.Clip))
    assert abs(clip.source_range.start_time.rate - float(tl.rate.exact)) < 1e-3
    assert clip.media_reference.target_url == tl.file_url


@pytest.mark.parametrize("rate_name", list(RATES))
def test_otio_read_back_frame_for_frame_with_the_real_available_range(rate_name):
    tl = timeline(rate_name)
    parsed = otio.adapters.read_from_string(renderer("otio")(tl).decode(), "otio_json")
    assert clips_of(parsed.tracks[0]) == expected(tl)
    clip = next(iter(parsed.find_clips()))
    assert clip.media_reference.available_range.duration.value == tl.frame_count
    assert clip.media_reference.available_range.start_time.value == 0
    assert parsed.metadata["scenes"]["source"] == "review"


@pytest.mark.parametrize("rate_name", list(RATES))
def test_fcpxml_read_back_with_an_xml_parser_frame_for_frame(rate_name):
    tl = timeline(rate_name)
    root = ET.fromstring(renderer("fcpxml")(tl))
    assert root.get("version") == "1.9"
    frame = Fraction(root.find("resources/format").get("frameDuration").rstrip("s"))
    assert frame == 1 / tl.rate.exact

    def frames(value: str) -> int:
        count = Fraction(value.rstrip("s")) / frame
        assert count.denominator == 1, f"{value} is not a whole number of frames"
        return int(count)

    spine = root.find("library/event/project/sequence/spine")
    assert root.find("library/event/project/sequence").get("tcFormat") == ("DF" if tl.rate.drop_frame else "NDF")
    got, position = [], 0
    for item in spine:
        assert frames(item.get("offset")) == position  # the spine has no hole and no overlap
        if item.tag == "asset-clip":
            got.append((frames(item.get("start")), frames(item.get("duration")), frames(item.get("offset"))))
        position += frames(item.get("duration"))
    assert got == expected(tl)


@pytest.mark.parametrize("rate_name", ["25", "29.97DF"])
def test_pyscenedetect_csv_lists_the_scenes(rate_name):
    tl = timeline(rate_name, 4000)
    rows = list(csv.reader(io.StringIO(renderer("scenedetect-csv")(tl).decode())))
    assert rows[0][0] == "Timecode List:" and len(rows[0]) == len(tl.scenes)
    assert rows[1][:2] == ["Scene Number", "Start Frame"]
    assert [(int(r[1]), int(r[4])) for r in rows[2:]] == tl.scenes
    assert all(int(r[7]) == int(r[4]) - int(r[1]) + 1 for r in rows[2:])
    assert float(rows[3][3]) == pytest.approx((tl.scenes[1][0] - 1) / tl.rate.fps, abs=5e-4)


def test_drop_frame_labels_at_the_minute_marks():
    ntsc30, ntsc60 = rate_of("30000/1001", 29.97), rate_of("60000/1001", 59.94)
    assert to_timecode(1799, ntsc30) == "00:00:59;29"
    assert to_timecode(1800, ntsc30) == "00:01:00;02"   # ;00 and ;01 do not exist at minute 1
    assert to_timecode(17982, ntsc30) == "00:10:00;00"  # every tenth minute keeps them
    assert to_timecode(107892, ntsc30) == "01:00:00;00"  # an hour of frames is an hour on the label
    assert to_timecode(3599, ntsc60) == "00:00:59;59"
    assert to_timecode(3600, ntsc60) == "00:01:00;04"  # four numbers dropped at 59.94
    assert to_timecode(215784, ntsc60) == "01:00:00;00"
    assert to_timecode(86400, rate_of("24000/1001", 23.976)) == "01:00:00:00"  # non-drop: an hour of labels
    assert to_timecode(90000, rate_of("25/1", 25.0)) == "01:00:00:00"


@pytest.mark.parametrize("rate_name", list(RATES))
def test_timecodes_agree_with_opentimelineio_and_read_back(rate_name):
    rate = rate_of(*RATES[rate_name])
    for frame in range(0, 400000, 1237):
        label = to_timecode(frame, rate)
        reference = otio.opentime.to_timecode(otio.opentime.RationalTime(frame, float(rate.exact)),
                                              float(rate.exact), rate.drop_frame)
        assert label == reference
        assert from_timecode(label, rate) == frame


def test_names_are_escaped_in_every_export(tmp_path):
    tl = timeline("25", 3000, name=EVIL, folder=tmp_path)
    for fmt in ("fcp7", "fcpxml"):
        text = renderer(fmt)(tl).decode()
        assert "<img" not in text
        ET.fromstring(text.split("\n", 2)[2])  # still well-formed XML
    fcp = otio.adapters.read_from_string(renderer("fcp7")(tl).decode(), "fcp_xml")
    assert next(iter(fcp.find_clips())).name.startswith(EVIL)
    edl = renderer("edl")(tl).decode()
    assert EVIL not in edl and EVIL.replace("\n", "_") in edl  # one event a line
    report = renderer("html")(tl).decode()
    assert "<img src=x" not in report and "&lt;img src=x onerror=alert(1)&gt;" in report
    parsed = otio.adapters.read_from_string(renderer("otio")(tl).decode(), "otio_json")
    assert next(iter(parsed.find_clips())).name.startswith(EVIL)
