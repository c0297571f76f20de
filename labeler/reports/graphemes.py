"""Counting user-perceived characters for lexicon `maxGraphemes` limits, without a Unicode segmentation library.

An approximation of UAX #29 extended grapheme clusters that covers what real text contains: combining marks,
variation selectors, emoji modifiers, ZWJ sequences, tag sequences (subdivision flags), regional-indicator
pairs, CR LF and Hangul jamo. It can be off by a little on contrived input (e.g. ZWJ between letters), which
only shifts where the 2000-grapheme limit bites; the byte limit (`maxLength`) is exact and always applies.
"""

from __future__ import annotations

import unicodedata
from typing import Final

_ZWJ: Final = 0x200D
_EXTEND_CATEGORIES: Final = frozenset({"Mn", "Me", "Mc"})


def _extends(code: int, char: str) -> bool:
    return (
        unicodedata.category(char) in _EXTEND_CATEGORIES
        or code == _ZWJ
        or 0x1F3FB <= code <= 0x1F3FF  # emoji skin-tone modifiers
        or 0xE0020 <= code <= 0xE007F  # tag characters (subdivision flags)
        or 0x1160 <= code <= 0x11FF  # Hangul medial vowels and final consonants join the syllable
    )


def grapheme_count(text: str, stop_after: int | None = None) -> int:
    """Approximate extended grapheme clusters in `text`; stops counting once past `stop_after`."""
    count = 0
    previous = -1
    regional_run = 0
    for char in text:
        code = ord(char)
        joins = previous == _ZWJ or (previous == 0x0D and code == 0x0A)
        if 0x1F1E6 <= code <= 0x1F1FF:  # regional indicators pair up into flags
            regional_run += 1
            joins = joins or regional_run % 2 == 0
        else:
            regional_run = 0
        if count == 0 or not (joins or _extends(code, char)):
            count += 1
            if stop_after is not None and count > stop_after:
                return count
        previous = code
    return count
