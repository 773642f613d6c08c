"""OpenTimelineIO (``.otio``, through the ``opentimelineio`` package): a
timeline with one video track, a clip per scene at its own frames and a gap
for the transition frames between scenes. Every clip refers to the video by
an external reference whose available range is the video's real length (its
decoded frames), not a made-up one. The timeline's metadata says which scene
list it is."""
import opentimelineio as otio


def render(timeline) -> bytes:
    rate = float(timeline.rate.exact)

    def span(start: int, frames: int):
        return otio.opentime.TimeRange(otio.opentime.RationalTime(start, rate),
                                       otio.opentime.RationalTime(frames, rate))

    tl = otio.schema.Timeline(name=f"{timeline.name} - scenes")
    tl.metadata["scenes"] = {"source": timeline.source, "note": timeline.note, "video": timeline.path}
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    tl.tracks.append(track)
    position = 0
    for number, (first, last) in enumerate(timeline.scenes, 1):
        if first - 1 > position:
            track.append(otio.schema.Gap(source_range=span(0, first - 1 - position)))
        reference = otio.schema.ExternalReference(target_url=timeline.file_url,
                                                  available_range=span(0, timeline.frame_count))
        track.append(otio.schema.Clip(name=f"{timeline.name} scene {number}", media_reference=reference,
                                      source_range=span(first - 1, last - first + 1)))
        position = last
    return otio.adapters.write_to_string(tl, "otio_json").encode("utf-8")
