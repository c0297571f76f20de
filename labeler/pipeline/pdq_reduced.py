"""PDQ from fewer pixels: the hash PDQ would compute from the full image, computed from a reduced decode of it.

PDQ never looks at more than a 64×64 summary of an image: it blurs the luma with two passes of box filters
("Jarosz filters", each about 1/128 of the image's side wide) and samples the result at 64×64 points, then takes a
DCT of those samples. Blurring millions of pixels is most of its cost (`pdqhash.compute` spends two thirds of a
photo's hashing time there, and grows with the pixels it is given). Both steps are linear, so each of the 64×64
samples is a fixed weighted sum of the luma, and the weights separate into one 64×N matrix per axis:

    samples = rows(H) · luma · cols(W)ᵀ        (H×W luma, H and W the full image's size)

Here those matrices are built exactly as PDQ's filters act (`pdq/cpp/downscaling`: window sizes, the shrinking
windows at the edges, the sample positions), and folded with how a reduced decode relates to the full image: a
JPEG decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling) gives one pixel per 2×2, 4×4 or 8×8 block, which
stands in for each pixel of its block. The samples then go through PDQ's DCT, median threshold and quality
metric (`hash_from_samples`). Decoding fewer pixels and never blurring them is where the time goes away; the
price is a small hash distance from the full-decode hash, measured in `bench/bench_hash.py`.

Meta's own reference tool shrinks images to 512×512 before PDQ for the same reason ("the two-pass Jarosz filter
is prohibitively expensive for larger images", `pdq/cpp/io/pdqio.cpp`); a plain resize moves hashes far more
than this does (bench/README.md).

The last stage is written out here because `pdqhash` takes only 8-bit pixels: handing it the 64×64 samples
rounded to bytes (its 64×64 input path) moves the two coefficients either side of the median often enough to
cost several bits. What it reproduces, from `pdq/cpp/hashing/pdqhashing.cpp`: the 16×64 DCT matrix (frequencies
1–16), the median as Torben's method picks it (the lower middle value), bit i·16+j set when coefficient (i, j)
is above it, the gradient-count quality, and the eight dihedral variants as sign and transpose patterns of the
coefficients. `tests/pipeline/test_pdq_reduced.py` holds it to `pdqhash` on integer samples, bit for bit.
"""

from __future__ import annotations

import functools
from typing import Final

import numpy as np

SIDE: Final = 64  # PDQ's sample grid
_BAND_ROWS: Final = 256  # luma is made and multiplied this many rows at a time, so big images need no float copy


@functools.lru_cache(maxsize=64)
def pdq_axis_filter(size: int) -> np.ndarray:
    """64×`size` weights: PDQ's two box-filter passes along one axis of a `size`-long image, then its sampling.

    PDQ's box1DFloat replaces value o by the mean of values lo(o) … hi(o)−1, lo(o) = max(0, o − before) and
    hi(o) = min(size, o + half): the window shrinks at both edges. Sample i reads position p(i) after two passes,
    so its weights are row p(i) of B·B: each o in p(i)'s window spreads 1 / (len(p(i))·len(o)) over o's own
    window. Only those ~2·window positions are touched (a difference array, then one cumulative sum).
    """
    window = (size + 2 * SIDE - 1) // (2 * SIDE)  # computeJaroszFilterWindowSize(size, 64)
    half = (window + 2) // 2
    before = window - half

    def lo(o: np.ndarray) -> np.ndarray:
        return np.maximum(0, o - before)

    def hi(o: np.ndarray) -> np.ndarray:
        return np.minimum(size, o + half)

    picks = np.array([int(((i + 0.5) * size) / SIDE) for i in range(SIDE)])  # decimateFloat's sample positions
    first = lo(picks)[:, None] + np.arange(window)[None, :]  # first-pass outputs each sample reads
    weight = (first < hi(picks)[:, None]) / (hi(picks) - lo(picks))[:, None]
    first = np.minimum(first, size - 1)  # (the masked-out ones, weight 0)
    weight = weight / (hi(first) - lo(first))
    spread = np.zeros((SIDE, size + 1))
    rows = np.broadcast_to(np.arange(SIDE)[:, None], first.shape)
    np.add.at(spread, (rows, lo(first)), weight)
    np.subtract.at(spread, (rows, hi(first)), weight)
    return np.cumsum(spread, axis=1)[:, :size]


@functools.lru_cache(maxsize=64)
def axis_filter(size: int, reduced: int, scale: int) -> np.ndarray:
    """64×`reduced` float32: `pdq_axis_filter(size)` for an axis decoded at 1/`scale` (`reduced` pixels)."""
    full = pdq_axis_filter(size)
    if scale == 1:
        return full.astype(np.float32)
    padded = np.zeros((SIDE, reduced * scale))
    padded[:, :size] = full
    # Each reduced pixel stands for the `scale` full pixels of its block: their weights add up.
    return padded.reshape(SIDE, reduced, scale).sum(axis=2).astype(np.float32)


def samples_from_pixels(pixels: np.ndarray, full_size: tuple[int, int], scale: int) -> np.ndarray:
    """PDQ's 64×64 samples (float64) of an image whose pixels (H×W×≥3 uint8, as pytx hands them to `pdqhash`)
    were decoded at 1/`scale` of `full_size` (width, height)."""
    height, width = pixels.shape[:2]
    rows = axis_filter(full_size[1], height, scale)
    cols = axis_filter(full_size[0], width, scale)
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # pdqhash's luma
    partial = np.zeros((SIDE, width), dtype=np.float32)
    for top in range(0, height, _BAND_ROWS):
        band = pixels[top : top + _BAND_ROWS, :, :3]
        luma = band[:, :, 0] * weights[0] + band[:, :, 1] * weights[1] + band[:, :, 2] * weights[2]
        # Each sample row reads a stretch of ~1/32 of the image: only a few of them read this band.
        reading = np.flatnonzero(rows[:, top : top + _BAND_ROWS].any(axis=1))
        partial[reading] += rows[reading, top : top + _BAND_ROWS] @ luma
    return partial.astype(np.float64) @ cols.T.astype(np.float64)


# -- PDQ's last stage on float samples (see module docstring) --

_DCT: Final = (
    np.sqrt(2.0 / SIDE) * np.cos(np.pi / 2 / SIDE * np.outer(np.arange(1, 17), 2 * np.arange(SIDE) + 1))
).astype(np.float32)
_ODD: Final = np.arange(16) % 2 == 1
_SIGN_I: Final = np.where(_ODD, 1.0, -1.0)[:, None].astype(np.float32)  # +1 on odd rows
_SIGN_J: Final = np.where(_ODD, 1.0, -1.0)[None, :].astype(np.float32)  # +1 on odd columns
_SIGN_IJ: Final = np.where(np.add.outer(np.arange(16), np.arange(16)) % 2 == 1, -1.0, 1.0).astype(np.float32)


def hash_from_samples(samples: np.ndarray, *, dihedral: bool = False) -> tuple[tuple[str, ...], int]:
    """(hex hashes, quality) from 64×64 samples; one hash, or the eight dihedral ones in pdqhash's order."""
    buffer = samples.astype(np.float32)
    coefficients = _DCT @ buffer @ _DCT.T
    if not dihedral:
        return (_bits_hex(coefficients),), _quality(buffer)
    a = coefficients
    variants = (
        a,  # original
        (a * _SIGN_J).T,  # rotate 90
        a * _SIGN_IJ,  # rotate 180
        (a * _SIGN_I).T,  # rotate 270
        a * _SIGN_I,  # flip X
        a * _SIGN_J,  # flip Y
        a.T,  # flip about the main diagonal
        (a * _SIGN_IJ).T,  # flip about the other diagonal
    )
    return tuple(_bits_hex(v) for v in variants), _quality(buffer)


def _bits_hex(coefficients: np.ndarray) -> str:
    flat = coefficients.ravel()
    median = np.partition(flat, 127)[127]  # Torben's median of 256 values: the 128th smallest
    # Bit k = i·16 + j; the hex is the 256-bit number, bit 255 first (pdqhash's and pytx's order).
    return np.packbits((flat > median)[::-1]).tobytes().hex()


def _quality(buffer: np.ndarray) -> int:
    """pdqImageDomainQualityMetric: significant gradients between neighbouring samples, in float32 as PDQ."""
    down = np.trunc((buffer[:-1, :] - buffer[1:, :]) * np.float32(100) / np.float32(255))
    across = np.trunc((buffer[:, :-1] - buffer[:, 1:]) * np.float32(100) / np.float32(255))
    gradient_sum = int(np.abs(down).sum(dtype=np.int64) + np.abs(across).sum(dtype=np.int64))
    return min(gradient_sum // 90, 100)
