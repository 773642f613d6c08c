"""Final Cut Pro 7 XML (``xmeml`` version 5; Premiere and Resolve import it):
one sequence, one video track, one clip item per scene at its own frames
(``start``/``end`` on the sequence equal ``in``/``out`` in the file, out
exclusive), every clip referencing one ``file`` with its ``pathurl``. Built
with ElementTree, so names are escaped."""
import xml.etree.ElementTree as ET

from ..timecode import to_timecode


def _rate(parent, rate) -> None:
    node = ET.SubElement(parent, "rate")
    ET.SubElement(node, "timebase").text = str(rate.timebase)
    ET.SubElement(node, "ntsc").text = "TRUE" if rate.ntsc else "FALSE"


def _text(parent, tag: str, value) -> ET.Element:
    node = ET.SubElement(parent, tag)
    node.text = str(value)
    return node


def _file(parent, timeline, first: bool) -> None:
    node = ET.SubElement(parent, "file", id="file-1")
    if not first:
        return  # later clips refer to the file described once
    _text(node, "name", timeline.name)
    _text(node, "pathurl", timeline.file_url)
    _rate(node, timeline.rate)
    _text(node, "duration", timeline.frame_count)
    video = ET.SubElement(ET.SubElement(node, "media"), "video")
    chars = ET.SubElement(video, "samplecharacteristics")
    _text(chars, "width", timeline.width)
    _text(chars, "height", timeline.height)


def render(timeline) -> bytes:
    rate = timeline.rate
    root = ET.Element("xmeml", version="5")
    seq = ET.SubElement(root, "sequence", id="sequence-1")
    _text(seq, "name", f"{timeline.name} - scenes")
    _text(seq, "duration", timeline.frame_count)
    _rate(seq, rate)
    tc = ET.SubElement(seq, "timecode")
    _rate(tc, rate)
    _text(tc, "string", to_timecode(0, rate))
    _text(tc, "frame", 0)
    _text(tc, "displayformat", "DF" if rate.drop_frame else "NDF")
    video = ET.SubElement(ET.SubElement(seq, "media"), "video")
    chars = ET.SubElement(ET.SubElement(video, "format"), "samplecharacteristics")
    _text(chars, "width", timeline.width)
    _text(chars, "height", timeline.height)
    track = ET.SubElement(video, "track")
    for number, (first, last) in enumerate(timeline.scenes, 1):
        clip = ET.SubElement(track, "clipitem", id=f"clipitem-{number}")
        _text(clip, "name", f"{timeline.name} scene {number}")
        _text(clip, "duration", timeline.frame_count)
        _rate(clip, rate)
        _text(clip, "start", first - 1)
        _text(clip, "end", last)
        _text(clip, "in", first - 1)
        _text(clip, "out", last)
        _file(clip, timeline, number == 1)
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE xmeml>\n' + body + "\n").encode("utf-8")
