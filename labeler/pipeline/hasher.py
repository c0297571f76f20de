"""Image bytes → PDQ hash and quality, computed the way HMA computes them.

Pixels are prepared exactly as python-threatexchange's `pdq_hasher` prepares them (HMA's `/h/hash` calls it):
LA and I;16 are converted to RGB, 2-D arrays (L, P palette indices, 1) are stacked to three channels, every
other mode is handed to `pdqhash` as decoded (RGBA/CMYK: first three channels), and EXIF orientation is ignored.
So a full-decode hash here equals HMA's hash of the same bytes, bit for bit.

Decoding is bounded per call (design invariant 8): input bytes, pixel count and the set of formats Pillow may
try. Every way an input can fail becomes `ImageRejected` with a stable reason code; nothing else escapes.
Whether a low quality is good enough is the caller's decision: this module only reports it.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pdqhash
from PIL import Image, UnidentifiedImageError

DEFAULT_MAX_BYTES: Final = 16 * 1024 * 1024
# About 5 bytes/pixel decoded plus ~28 bytes/pixel inside pdqhash (float64 luma, two float32 buffers).
DEFAULT_MAX_PIXELS: Final = 40_000_000
# Formats Pillow may try (the JPEG opener also yields MPO, as phone cameras write). Plugins outside this list
# (EPS runs Ghostscript, PSD, FITS, …) never see our input. Names Pillow lacks are skipped.
DEFAULT_FORMATS: Final = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "AVIF")
# Smallest side a reduced JPEG decode keeps; PDQ downsamples to 64×64, so 512 px keeps distances small.
REDUCED_MIN_SIDE: Final = 512

# Stable reason codes for ImageRejected.
TOO_LARGE: Final = "too-large"
TOO_MANY_PIXELS: Final = "too-many-pixels"
NOT_AN_IMAGE: Final = "not-an-image"
TRUNCATED: Final = "truncated"
UNSUPPORTED: Final = "unsupported"
CORRUPT: Final = "corrupt"
REASONS: Final = frozenset({TOO_LARGE, TOO_MANY_PIXELS, NOT_AN_IMAGE, TRUNCATED, UNSUPPORTED, CORRUPT})

_PDQ_HEX = re.compile(r"[0-9a-f]{64}")
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
_BYTE_DTYPES = frozenset({np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.bool_)})


class ImageRejected(Exception):
    """The bytes cannot be hashed; `reason` is one of REASONS, `detail` is for humans and logs."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)  # args as given, so it survives pickling (process pools)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"

    def __repr__(self) -> str:
        return f"ImageRejected(reason={self.reason!r}, detail={self.detail!r})"


@dataclass(frozen=True, slots=True)
class PdqResult:
    """A PDQ hash (64 lowercase hex, MSB first like pytx) with its quality (0–100).

    `variants` holds the 8 dihedral hashes when asked for, in pdqhash order: original, rot90, rot180, rot270,
    flipX, flipY, flip+1, flip-1 (`variants[0] == hash`). `width`/`height` are the image's own size.
    """

    hash: str
    quality: int
    width: int
    height: int
    reduced: bool = False
    variants: tuple[str, ...] | None = None


def hash_image(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    reduced_decode: bool = False,
    dihedral: bool = False,
    formats: Sequence[str] = DEFAULT_FORMATS,
) -> PdqResult:
    """Decode `data` within the limits and PDQ-hash it.

    `reduced_decode` lets libjpeg decode JPEGs at 1/2, 1/4 or 1/8 scale (never below REDUCED_MIN_SIDE on the
    short side): several times faster on large photos, at the price of a small distance to the exact hash.
    CPU-bound; call it from a worker thread.
    """
    if len(data) > max_bytes:
        raise ImageRejected(TOO_LARGE, f"{len(data)} bytes > limit {max_bytes}")
    pixels, width, height, reduced = _decode(data, max_pixels, reduced_decode, _known_formats(tuple(formats)))
    if dihedral:
        vectors, quality = pdqhash.compute_dihedral(pixels)
        hexes = tuple(_bits_to_hex(v) for v in vectors)
        return PdqResult(hexes[0], int(quality), width, height, reduced, hexes)
    vector, quality = pdqhash.compute(pixels)
    return PdqResult(_bits_to_hex(vector), int(quality), width, height, reduced)


def validate_pdq_hex(value: object) -> str:
    """Return `value` if it is a PDQ hash as HMA accepts it (exactly 64 lowercase hex), else raise ValueError."""
    if not isinstance(value, str) or _PDQ_HEX.fullmatch(value) is None:
        raise ValueError(f"invalid PDQ hash: {value!r:.80}")
    return value


def hamming_distance(a: str, b: str) -> int:
    """Number of differing bits between two PDQ hex hashes (both validated)."""
    return (int(validate_pdq_hex(a), 16) ^ int(validate_pdq_hex(b), 16)).bit_count()


def _bits_to_hex(vector: np.ndarray) -> str:
    # pdqhash gives 256 ints 0/1, most significant bit first; packbits keeps that order.
    return np.packbits(np.asarray(vector, dtype=np.uint8)).tobytes().hex()


@functools.lru_cache(maxsize=8)
def _known_formats(formats: tuple[str, ...]) -> tuple[str, ...]:
    """Keep the names Pillow can open; an unknown name would make Image.open raise KeyError for every input."""
    Image.init()
    return tuple(f for f in (name.upper() for name in formats) if f in Image.OPEN)


def _decode(
    data: bytes, max_pixels: int, reduced_decode: bool, formats: tuple[str, ...]
) -> tuple[np.ndarray, int, int, bool]:
    """Open within the limits and return (pixels as pdqhash wants them, width, height, reduced)."""
    try:
        with _open(data, formats) as im:
            width, height = im.size
            if width < 1 or height < 1:
                raise ImageRejected(CORRUPT, f"empty image {width}x{height}")
            if width * height > max_pixels:
                raise ImageRejected(TOO_MANY_PIXELS, f"{width}x{height} > limit {max_pixels} pixels")
            reduced = False
            if reduced_decode and im.format in _JPEG_FORMATS:
                before = im.size
                im.draft(im.mode, (REDUCED_MIN_SIDE, REDUCED_MIN_SIDE))
                reduced = im.size != before
            return _to_pdq_array(im), width, height, reduced
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow's global guard fired first (the warning arrives as an exception under `-W error`).
        raise ImageRejected(TOO_MANY_PIXELS, str(e)) from e
    except OSError as e:
        raise _classify_decode_error(e) from e
    except Exception as e:  # Pillow plugins raise ValueError, SyntaxError, EOFError, struct.error, …
        raise ImageRejected(CORRUPT, f"{type(e).__name__}: {e}") from e


def _open(data: bytes, formats: tuple[str, ...]) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=formats)
    except UnidentifiedImageError as e:
        other = _identify_other_format(data)
        if other is not None:
            raise ImageRejected(UNSUPPORTED, f"format {other} is not allowed") from e
        raise ImageRejected(NOT_AN_IMAGE, "no image format recognised") from e


def _identify_other_format(data: bytes) -> str | None:
    """Name the format Pillow would see outside the allowed list (headers only, never decoded)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.format or "unknown"
    except Exception:
        return None


def _to_pdq_array(im: Image.Image) -> np.ndarray:
    """The same array pytx's pdq_hasher hands to pdqhash (see module docstring)."""
    if im.mode in ("LA", "I;16"):
        im = im.convert("RGB")
    array = np.asarray(im)
    if array.ndim == 2:
        array = np.repeat(array[:, :, np.newaxis], 3, axis=2)
    if array.ndim != 3 or array.shape[2] < 3 or array.dtype not in _BYTE_DTYPES:
        # pdqhash needs 8-bit pixels in ≥3 channels; pytx (and so HMA) fails on these modes too.
        raise ImageRejected(UNSUPPORTED, f"image mode {im.mode} cannot be PDQ-hashed")
    return np.ascontiguousarray(array)


def _classify_decode_error(e: OSError) -> ImageRejected:
    text = str(e)
    lowered = text.lower()
    if "truncated" in lowered or "broken data stream" in lowered or "premature end" in lowered:
        return ImageRejected(TRUNCATED, text)
    if "decoder" in lowered and "not available" in lowered:
        return ImageRejected(UNSUPPORTED, text)
    return ImageRejected(CORRUPT, text)
