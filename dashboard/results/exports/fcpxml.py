"""FCPXML 1.9 (Final Cut Pro): a format, an asset for the video (its media
at ``media-rep``), and a project whose spine has one ``asset-clip`` per scene
and a ``gap`` for the transition frames between scenes, so each scene sits at
its own frames. Times are exact fractions of a second (``1001/30000s``), the
frames of the video's rate. Built with ElementTree (names escaped)."""
import xml.etree.ElementTree as ET
from fractions import Fraction


def _time(frames: int, rate) -> str:
    value = Fraction(frames) / rate.exact
    return f"{value.numerator}/{value.denominator}s" if value.denominator != 1 else f"{value.numerator}s"


def render(timeline) -> bytes:
    rate = timeline.rate
    tc_format = "DF" if rate.drop_frame else "NDF"
    root = ET.Element("fcpxml", version="1.9")
    resources = ET.SubElement(root, "resources")
    ET.SubElement(resources, "format", id="r1", frameDuration=_time(1, rate), width=str(timeline.width),
                  height=str(timeline.height))
    asset = ET.SubElement(resources, "asset", id="r2", name=timeline.name, start="0s",
                          duration=_time(timeline.frame_count, rate), hasVideo="1", format="r1")
    ET.SubElement(asset, "media-rep", kind="original-media", src=timeline.file_url)
    event = ET.SubElement(ET.SubElement(root, "library"), "event", name="Scenes")
    project = ET.SubElement(event, "project", name=f"{timeline.name} - scenes")
    end = timeline.scenes[-1][1] if timeline.scenes else 0
    sequence = ET.SubElement(project, "sequence", format="r1", duration=_time(end, rate), tcStart="0s",
                             tcFormat=tc_format)
    spine = ET.SubElement(sequence, "spine")
    position = 0
    for number, (first, last) in enumerate(timeline.scenes, 1):
        if first - 1 > position:
            ET.SubElement(spine, "gap", name="Gap", offset=_time(position, rate), start="0s",
                          duration=_time(first - 1 - position, rate))
        ET.SubElement(spine, "asset-clip", ref="r2", name=f"{timeline.name} scene {number}",
                      offset=_time(first - 1, rate), start=_time(first - 1, rate),
                      duration=_time(last - first + 1, rate), format="r1", tcFormat=tc_format)
        position = last
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE fcpxml>\n' + body + "\n").encode("utf-8")
