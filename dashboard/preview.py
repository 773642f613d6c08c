"""The few lines a step's card shows: the meaningful ones, each readable whole.

A step's per-frame progress lines (FRAMES:, its "progress" pattern) already
drive the bar and the current item: in the card's box they would push every
other line out within a second. A long line is shortened where a reader
expects it to be: a "KEY: {json}" line (CONFIG_EFFECTIVE) after its last
whole "key": value pair, any other line at a space, never in the middle of
a word or a value.
"""
import json
import re

from .progress import LineMatcher

LIMIT = 160
ELLIPSIS = "…"
_KEYED_JSON = re.compile(r"^([A-Z][A-Z0-9_]*: )(\{.*\})\s*$")


def meaningful(line: str, matcher: LineMatcher | None) -> bool:
    """False for the lines that only move the progress bar."""
    if matcher is None:
        return True
    found = matcher.match(line)
    return not (found and found[0] == "progress")


def shorten(line: str, limit: int = LIMIT) -> str:
    if len(line) <= limit:
        return line
    keyed = _KEYED_JSON.match(line)
    if keyed:
        short = _shorten_object(keyed.group(1), keyed.group(2), limit)
        if short is not None:
            return short
    cut = line.rfind(" ", 0, limit - len(ELLIPSIS))
    if cut < limit // 2:  # no space worth cutting at: cut where the limit falls
        cut = limit - len(ELLIPSIS) - 1
    return line[:cut].rstrip(" ,;:") + " " + ELLIPSIS


def _shorten_object(prefix: str, text: str, limit: int) -> str | None:
    """``prefix`` and as many of the object's first pairs as fit, then an ellipsis
    inside the braces; None if ``text`` is not a JSON object."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    pairs: list[str] = []
    closing = f", {ELLIPSIS}}}"
    for key, value in data.items():
        pair = f"{json.dumps(key, ensure_ascii=False)}: {json.dumps(value, ensure_ascii=False)}"
        if len(prefix) + 1 + len(", ".join([*pairs, pair])) + len(closing) > limit:
            break
        pairs.append(pair)
    if not pairs:
        return f"{prefix}{{{ELLIPSIS}}}"
    return f"{prefix}{{{', '.join(pairs)}{closing}"
