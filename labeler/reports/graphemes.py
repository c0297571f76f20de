"""Counting user-perceived characters for lexicon `maxGraphemes` limits.

A grapheme is an extended grapheme cluster of Unicode's UAX #29 (combining marks, emoji ZWJ sequences, flags,
Hangul syllables, Indic conjuncts, prepended marks), as the `regex` module's `\\X` matches it: the standard library
has no text segmentation.
"""

from __future__ import annotations

from typing import Final

import regex

_CLUSTER: Final = regex.compile(r"\X")


def grapheme_count(text: str, stop_after: int | None = None) -> int:
    """Extended grapheme clusters in `text`; stops counting once past `stop_after`."""
    count = 0
    for _cluster in _CLUSTER.finditer(text):
        count += 1
        if stop_after is not None and count > stop_after:
            break
    return count
