"""Image bytes → PDQ hash and quality, computed the way HMA computes them.

Pixels are prepared exactly as python-threatexchange's `pdq_hasher` prepares them (HMA's `/h/hash` calls it):
LA and I;16 are converted to RGB, 2-D arrays (L, P palette indices, 1) are stacked to three channels, every
other mode is handed to `pdqhash` as decoded (RGBA/CMYK: first three channels), and EXIF orientation is ignored.

Two ways to hash those pixels:
- exact (`reduced_decode=False`): the full decode goes to `pdqhash.compute`, as pytx does, so the hash equals
  HMA's hash of the same bytes, bit for bit.
- reduced (`reduced_decode=True`, the service's default): JPEGs are decoded at 1/2, 1/4 or 1/8 scale (never
  below REDUCED_MIN_SIDE on the short side) and PDQ's own filters are applied as matrices (`pdq_reduced`):
  several times less CPU per photo, hashes a bit or two from the exact ones (bench/README.md).

Decoding is bounded per call (design invariant 8): input bytes, pixel count, JPEG scans and the set of formats
Pillow may try; wall time and memory are bounded by the process running it (`hashing`). Every way an input can
fail becomes `ImageRejected` with a stable reason code; nothing else escapes. Whether a low quality is good
enough is the caller's decision: this module only reports it.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pdqhash
from PIL import Image, UnidentifiedImageError

from labeler.pipeline import jpeg_scans
from labeler.pipeline.pdq_reduced import hash_from_samples, samples_from_pixels
from labeler.pipeline.signals import (
    CORRUPT,
    TOO_MANY_PIXELS,
    TOO_MUCH_MEMORY,
    TOO_SLOW,
    TRUNCATED,
    UNSUPPORTED,
    MediaRejected,
)
from labeler.pipeline.signals import (
    validate_pdq_hex as validate_pdq_hex,  # re-exported: its callers import it from here
)

DEFAULT_MAX_BYTES: Final = 16 * 1024 * 1024
# About 5 bytes/pixel decoded plus ~28 bytes/pixel inside pdqhash (float64 luma, two float32 buffers).
DEFAULT_MAX_PIXELS: Final = 40_000_000
# Formats Pillow may try (the JPEG opener also yields MPO, as phone cameras write). Plugins outside this list
# (EPS runs Ghostscript, PSD, FITS, …) never see our input. Names Pillow lacks are skipped.
DEFAULT_FORMATS: Final = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "AVIF")
# A progressive JPEG from an encoder has about 10 scans; each scan is a pass over every block of the image.
DEFAULT_MAX_JPEG_SCANS: Final = 100
# Smallest side a reduced JPEG decode keeps (bench/README.md: hash distance and CPU for 512, 384, 256, 128).
REDUCED_MIN_SIDE: Final = 384
# PDQ hashes nothing smaller (MIN_HASHABLE_DIM): such an image gets the all-zero hash with quality 0.
_MIN_HASHABLE_SIDE: Final = 5

# Stable reason codes for ImageRejected, beside the ones shared with videos (`labeler.pipeline.signals`).
TOO_LARGE: Final = "too-large"
NOT_AN_IMAGE: Final = "not-an-image"
TOO_MANY_SCANS: Final = "too-many-scans"
REASONS: Final = frozenset(
    {TOO_LARGE, TOO_MANY_PIXELS, NOT_AN_IMAGE, TRUNCATED, UNSUPPORTED, CORRUPT, TOO_MANY_SCANS, TOO_SLOW,
     TOO_MUCH_MEMORY}
)  # fmt: skip

_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
_BYTE_DTYPES = frozenset({np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.bool_)})


class ImageRejected(MediaRejected):
    """The bytes cannot be hashed; `reason` is one of REASONS, `detail` is for humans and logs."""


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
    max_jpeg_scans: int = DEFAULT_MAX_JPEG_SCANS,
    reduced_decode: bool = False,
    dihedral: bool = False,
    formats: Sequence[str] = DEFAULT_FORMATS,
) -> PdqResult:
    """Decode `data` within the limits and PDQ-hash it, exactly (pytx's hash) or from a reduced decode.

    CPU-bound; call it from a worker process (`hashing.HashPool`).
    """
    if len(data) > max_bytes:
        raise ImageRejected(TOO_LARGE, f"{len(data)} bytes > limit {max_bytes}")
    if max_jpeg_scans > 0 and jpeg_scans.is_jpeg(data):
        scans = jpeg_scans.count_scans(data, stop_after=max_jpeg_scans)
        if scans > max_jpeg_scans:
            raise ImageRejected(TOO_MANY_SCANS, f"more than {max_jpeg_scans} JPEG scans")
    try:
        with _open(data, _known_formats(tuple(formats))) as im:
            width, height = im.size
            if width < 1 or height < 1:
                raise ImageRejected(CORRUPT, f"empty image {width}x{height}")
            if width * height > max_pixels:
                raise ImageRejected(TOO_MANY_PIXELS, f"{width}x{height} > limit {max_pixels} pixels")
            if reduced_decode:
                return _hash_reduced(im, dihedral)
            return _hash_exact(im, dihedral)
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow's global guard fired first (the warning arrives as an exception under `-W error`).
        raise ImageRejected(TOO_MANY_PIXELS, str(e)) from e
    except MemoryError:
        raise  # the process's memory limit: the pool reports it (TOO_MUCH_MEMORY) and replaces the process
    except OSError as e:
        raise _classify_decode_error(e) from e
    except Exception as e:  # Pillow plugins raise ValueError, SyntaxError, EOFError, struct.error, …
        raise ImageRejected(CORRUPT, f"{type(e).__name__}: {e}") from e


def _hash_exact(im: Image.Image, dihedral: bool) -> PdqResult:
    """The full decode through `pdqhash`, as pytx and HMA hash it."""
    width, height = im.size
    pixels = _to_pdq_array(im)
    if dihedral:
        vectors, quality = pdqhash.compute_dihedral(pixels)
        hexes = tuple(_bits_to_hex(v) for v in vectors)
        return PdqResult(hexes[0], int(quality), width, height, False, hexes)
    vector, quality = pdqhash.compute(pixels)
    return PdqResult(_bits_to_hex(vector), int(quality), width, height, False)


def _hash_reduced(im: Image.Image, dihedral: bool) -> PdqResult:
    """A JPEG decoded at the smallest scale that keeps REDUCED_MIN_SIDE, then PDQ's filters as matrices."""
    width, height = im.size
    if min(width, height) < _MIN_HASHABLE_SIDE:
        hexes: tuple[str, ...] = ("0" * 64,) * (8 if dihedral else 1)
        return PdqResult(hexes[0], 0, width, height, False, hexes if dihedral else None)
    scale = 1
    if im.format in _JPEG_FORMATS:
        im.draft(im.mode, (REDUCED_MIN_SIDE, REDUCED_MIN_SIDE))
        # Pillow decodes at 1/scale, rounding up: find which scale it chose.
        scale = next(s for s in (8, 4, 2, 1) if (width + s - 1) // s == im.size[0])
    samples = samples_from_pixels(_to_pdq_array(im), (width, height), scale)
    hexes, quality = hash_from_samples(samples, dihedral=dihedral)
    return PdqResult(hexes[0], quality, width, height, scale > 1, hexes if dihedral else None)


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
    if "out of memory" in lowered:  # libjpeg's own allocator hit the process's limit
        return ImageRejected(TOO_MUCH_MEMORY, text)
    return ImageRejected(CORRUPT, text)
