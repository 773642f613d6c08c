"""Turns a child's raw output bytes into clean text lines.

A step may print progress bars that redraw with a carriage return, colour its
output with ANSI escapes, emit bytes that are not UTF-8 or end without a final
newline; none of that may break the reader or reach the page as markup.
"""
import codecs
import re

# A line break is \r\n, \n or a lone \r (progress bars redraw with \r).
_BREAK = re.compile(r"\r\n|\r|\n")

# CSI sequences (colours, cursor moves), OSC sequences (window titles,
# hyperlinks) and the remaining two-byte escapes.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")


def strip_ansi(text: str) -> str:
    if "\x1b" not in text:
        return text
    return _ANSI.sub("", text)


class LineSplitter:
    """Incremental splitter: feed() chunks as they come, close() at EOF.

    A line longer than ``max_line`` characters is cut so that a child that
    never prints a newline cannot make the reader hold unbounded memory.
    """

    def __init__(self, max_line: int = 256 * 1024):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._max_line = max_line

    def feed(self, data: bytes) -> list[str]:
        return self._split(self._decoder.decode(data), final=False)

    def close(self) -> list[str]:
        return self._split(self._decoder.decode(b"", final=True), final=True)

    def _split(self, text: str, final: bool) -> list[str]:
        text = self._pending + text
        self._pending = ""
        if not final and text.endswith("\r"):
            # The \n of a \r\n may come in the next chunk: wait for it.
            self._pending = "\r"
            text = text[:-1]
        parts = _BREAK.split(text)
        tail = parts.pop()
        if final:
            if tail:
                parts.append(tail)
        elif len(tail) > self._max_line:
            parts.append(tail)
        else:
            self._pending = tail + self._pending
        return [strip_ansi(p) for p in parts]
