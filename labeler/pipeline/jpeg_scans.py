"""Count the scans of a JPEG before decoding it: a progressive JPEG of a few kilobytes can hold a thousand scans,
and the decoder makes a pass over every block of the image for each one (issue 15: 1,000 scans, 94 KB, 32 s).

libjpeg-turbo can cap scans only through its TurboJPEG API (`TJPARAM_SCANLIMIT`), which Pillow does not use, so the
markers are walked here: segment lengths up to each start-of-scan (SOS, FFDA), then the entropy-coded data, in
which a real marker is an FF byte followed by anything but 00 (a stuffed FF) or D0–D7 (restart markers).
"""

from __future__ import annotations

import re
from typing import Final

_SOI: Final = b"\xff\xd8"
_EOI: Final = 0xD9
_SOS: Final = 0xDA
# Markers that stand alone, without a length: TEM (01) and RST0–RST7 (D0–D7).
_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD8)})
# The end of entropy-coded data: FF (after any fill FFs) followed by a byte that starts a marker.
_MARKER_AFTER_DATA: Final = re.compile(rb"\xff+(?=[^\x00\xd0-\xd7\xff])")


def is_jpeg(data: bytes) -> bool:
    return data.startswith(_SOI)


def count_scans(data: bytes, stop_after: int) -> int:
    """Number of scans in the first image of a JPEG stream, counting no further than `stop_after` + 1.

    Reads markers only, never pixels: a malformed stream just ends the count where it stops making sense (the
    decoder then says what is wrong with it).
    """
    scans, i, size = 0, len(_SOI), len(data)
    while i + 1 < size:
        if data[i] != 0xFF:
            return scans  # not at a marker: leave the verdict to the decoder
        while i + 1 < size and data[i + 1] == 0xFF:  # fill bytes before a marker
            i += 1
        if i + 1 >= size:
            break
        marker = data[i + 1]
        i += 2
        if marker == _EOI:
            break
        if marker in _STANDALONE:
            continue
        if i + 2 > size:
            break
        end = i + (data[i] << 8 | data[i + 1])
        if marker != _SOS:
            i = end
            continue
        scans += 1
        if scans > stop_after:
            break
        found = _MARKER_AFTER_DATA.search(data, end)
        if found is None:
            break
        i = found.end() - 1
    return scans
