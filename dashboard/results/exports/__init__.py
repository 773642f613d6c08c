"""The export formats, one module each: ``render(timeline) -> bytes``.
FORMATS maps the ``format`` of the export URL to (module, extension, MIME type)."""
from importlib import import_module

FORMATS = {
    "csv": ("csv_export", ".csv", "text/csv"),
    "scenedetect-csv": ("scenedetect_csv", ".scenes-pyscenedetect.csv", "text/csv"),
    "edl": ("edl", ".edl", "text/plain"),
    "fcp7": ("fcp7", ".fcp7.xml", "application/xml"),
    "fcpxml": ("fcpxml", ".fcpxml", "application/xml"),
    "otio": ("otio_export", ".otio", "application/json"),
    "html": ("html_report", ".report.html", "text/html"),
}


def renderer(name: str):
    module, _, _ = FORMATS[name]
    return import_module(f"{__name__}.{module}").render


def file_name(video_name: str, name: str) -> str:
    stem = video_name.rsplit(".", 1)[0] if "." in video_name else video_name
    return stem + FORMATS[name][1]
