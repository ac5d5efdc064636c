"""Which rows of a batch a set of re2 patterns can match, with one scan of all their texts at once.

The runtime joins one field's texts of a batch with SEPARATOR and scans the joined text once with
the alternation of every prefilter on that field (validators_builtin.Prefilter). A row is flagged
when a match touches it; only flagged rows need their validators' exact check().

Why no row with a match is missed: the separator starts and ends with a newline, which is what
`\\b`, `(?m)^` and `(?m)$` see at a text's start and end on their own too (the prefilters use
no other anchors), so a match inside a row on its own is also a match at the same place in the
joined text. A scan from a position at or before it finds a match that starts at or before it,
and that match either reaches it (the row is flagged) or ends before it, and the scan goes on
from there. Matches that span the separator, or hide others, only flag rows.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import accumulate
from typing import Any

import re2

SEPARATOR = "\n\x00\n"
_SEP = SEPARATOR.encode()
_COMPILED: dict[tuple[str, ...], Any] = {}
# Only where a match is counts: re2 skips finding the patterns' groups (the same matches).
_OPTIONS = re2.Options()
_OPTIONS.never_capture = True

try:  # re2's C++ matcher on bytes, without the wrapper's match objects and offset decoding
    _UNANCHORED = re2._Anchor.UNANCHORED
    _LOW_LEVEL = True
except AttributeError:  # another google-re2 version: the public API on str
    _LOW_LEVEL = False


def combined(patterns: tuple[str, ...]) -> Any:
    """One regex for the alternation of several patterns (each a self-contained group)."""
    rx = _COMPILED.get(patterns)
    if rx is None:
        rx = _COMPILED[patterns] = re2.compile("|".join(f"(?:{p})" for p in patterns), _OPTIONS)
    return rx


def flag_rows(regex: Any, texts: list[str]) -> set[int]:
    """Indexes of texts that regex may match (each text scanned as if on its own: see above)."""
    if len(texts) == 1 and _LOW_LEVEL:
        one = texts[0].encode()
        return {0} if regex._regexp.Match(_UNANCHORED, one, 0, len(one))[0][0] >= 0 else set()
    data: Any
    if _LOW_LEVEL:
        joined = SEPARATOR.join(texts)
        if joined.isascii():  # bytes are characters: no text needs encoding on its own
            chunks: list[Any] = texts
            data = joined.encode()
        else:
            chunks = [t.encode() for t in texts]
            data = _SEP.join(chunks)
        match = regex._regexp.Match

        def search(pos: int) -> tuple[int, int]:
            return match(_UNANCHORED, data, pos, len(data))[0]  # type: ignore[no-any-return]
    else:
        chunks = texts
        data = SEPARATOR.join(texts)

        def search(pos: int) -> tuple[int, int]:
            m = regex.search(data, pos)
            return (-1, -1) if m is None else m.span()
    flagged: set[int] = set()
    starts: list[int] = []
    ends: list[int] = []
    pos, end = 0, len(data)
    while pos <= end:
        start, stop = search(pos)
        if start < 0:
            break
        if not ends:  # where each text starts and ends in data (only once something matched)
            sep = len(SEPARATOR)
            ends = list(accumulate(len(chunk) + sep for chunk in chunks))
            starts = [e - len(chunk) - sep for e, chunk in zip(ends, chunks, strict=True)]
            ends = [e - sep for e in ends]
        first = bisect_left(ends, start)  # rows whose [start, end] the match's [start, stop] touches
        last = bisect_right(starts, stop) - 1
        if first <= last:
            flagged.update(range(first, last + 1))
            # The rest of a flagged row needs no scan: go on after it (in the separator, ASCII).
            pos = max(stop, ends[last] + 1)
        else:  # a match within a separator
            pos = stop if stop > start else start + 1
    return flagged
