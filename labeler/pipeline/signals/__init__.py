"""Hash signals: what the pipeline computes from a blob and matches against banks of the same signal type.

    pdq     perceptual hash of an image (`labeler.pipeline.hasher`), matched by Hamming distance
    md5     MD5 of the blob's bytes (HMA's `video_md5`; exchange hash lists carry it), matched exactly
    sha256  SHA-256 of the blob's bytes (the digest inside a blob CID), matched exactly
    vpdq    PDQ hashes of a video's frames, one per second (`video`, `vpdq`), matched by share of frames

Every blob gets the exact signals, computed while it streams in (`exact.StreamDigests`), whatever its media type;
images get PDQ and videos vPDQ. A bank holds hashes of one signal type.
"""

from __future__ import annotations

import re
from typing import Final

PDQ: Final = "pdq"
MD5: Final = "md5"
SHA256: Final = "sha256"
VPDQ: Final = "vpdq"
EXACT_SIGNALS: Final = (MD5, SHA256)
# What a blob is, as a record says and a job keeps (`image_jobs.media`): an image gets PDQ, a video vPDQ.
IMAGE: Final = "image"
VIDEO: Final = "video"
SIGNAL_TYPES: Final = (PDQ, MD5, SHA256, VPDQ)
_PDQ_HEX: Final = re.compile(r"[0-9a-f]{64}")


def validate_pdq_hex(value: object) -> str:
    """Return `value` if it is a PDQ hash as HMA accepts it (exactly 64 lowercase hex), else raise ValueError.
    Here rather than in `hasher`, so that reading a bank file does not import the imaging libraries."""
    if not isinstance(value, str) or _PDQ_HEX.fullmatch(value) is None:
        raise ValueError(f"invalid PDQ hash: {value!r:.80}")
    return value


# Reason codes for MediaRejected that images and videos share (each module adds its own beside them).
TOO_MANY_PIXELS: Final = "too-many-pixels"
TRUNCATED: Final = "truncated"
UNSUPPORTED: Final = "unsupported"
CORRUPT: Final = "corrupt"
# Set by the process pool running the hashers (`hashing`), never by the hashers themselves.
TOO_SLOW: Final = "too-slow"  # over the wall-time limit
TOO_MUCH_MEMORY: Final = "too-much-memory"  # over the address-space limit


class MediaRejected(Exception):
    """A blob cannot be hashed perceptually; `reason` is a stable code, `detail` is for humans and logs. Its exact
    hashes are still matched. Subclasses: `hasher.ImageRejected`, `video.VideoRejected`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)  # args as given, so it survives pickling (process pools)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, detail={self.detail!r})"


def check_signal_type(value: str) -> str:
    """`value` if it names a signal type, else ValueError naming the known ones."""
    if value not in SIGNAL_TYPES:
        raise ValueError(f"unknown signal type {value!r}: one of {', '.join(SIGNAL_TYPES)}")
    return value
