"""pdq_reduced: PDQ's filters as matrices and PDQ's last stage on float samples, held to `pdqhash` itself."""

from __future__ import annotations

import numpy as np
import pdqhash
import pytest

from labeler.pipeline.hasher import _bits_to_hex, hamming_distance, hash_image
from labeler.pipeline.pdq_reduced import hash_from_samples, pdq_axis_filter, samples_from_pixels

from .corpus import encode, structured_rgb


def box1d_like_pdq(values: list[float], window: int) -> list[float]:
    """A line-by-line transcription of box1DFloat's four phases (pdq/cpp/downscaling/downscaling.cpp)."""
    size = len(values)
    half = (window + 2) // 2
    out = [0.0] * size
    total, count, left, right, o = 0.0, 0, 0, 0, 0
    for _ in range(half - 1):  # phase 1: accumulate
        total, count, right = total + values[right], count + 1, right + 1
    for _ in range(window - half + 1):  # phase 2: growing window
        total, count, right = total + values[right], count + 1, right + 1
        out[o], o = total / count, o + 1
    for _ in range(size - window):  # phase 3: full window
        total += values[right] - values[left]
        right, left = right + 1, left + 1
        out[o], o = total / count, o + 1
    for _ in range(half - 1):  # phase 4: shrinking window
        total, count, left = total - values[left], count - 1, left + 1
        out[o], o = total / count, o + 1
    return out


@pytest.mark.parametrize("size", [5, 37, 64, 65, 127, 128, 129, 300, 1000, 1025])
def test_axis_filter_is_pdqs_two_box_passes_then_its_sampling(size: int) -> None:
    window = (size + 127) // 128
    rng = np.random.default_rng(size)
    line = rng.uniform(0, 255, size).tolist()
    filtered = box1d_like_pdq(box1d_like_pdq(line, window), window)
    expected = [filtered[int(((i + 0.5) * size) / 64)] for i in range(64)]
    assert np.allclose(pdq_axis_filter(size) @ np.array(line), expected, rtol=0, atol=1e-9)


def test_last_stage_equals_pdqhash_on_integer_samples() -> None:
    """pdqhash hashes a 64×64 image as its samples (its video path): give both the same integer samples."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:64, 0:64]
    exact, distances = 0, []
    for _ in range(200):
        field = 128 + 60 * np.sin(x / rng.uniform(3, 20) + rng.uniform(0, 6)) * np.cos(y / rng.uniform(3, 20))
        samples = np.clip(np.rint(field + rng.normal(0, rng.uniform(0, 30), (64, 64))), 0, 255)
        vectors, quality = pdqhash.compute_dihedral(np.repeat(samples.astype(np.uint8)[:, :, None], 3, axis=2))
        theirs = [_bits_to_hex(v) for v in vectors]
        ours, our_quality = hash_from_samples(samples, dihedral=True)
        assert our_quality == quality
        distances.append(max(hamming_distance(a, b) for a, b in zip(theirs, ours, strict=True)))
        exact += distances[-1] == 0
    # Float32 sums in another order can swap the two coefficients either side of the median (2 bits) when they
    # are within rounding of each other: rare, never more.
    assert max(distances) <= 2 and exact >= 195, distances


def test_full_size_samples_hash_exactly_as_pdqhash() -> None:
    """At scale 1 the matrices are PDQ's own filters: the same hash as pdqhash on the full decode."""
    for seed, (width, height) in enumerate([(640, 480), (333, 1000), (1201, 799), (64, 64), (70, 5)]):
        pixels = np.asarray(structured_rgb(width, height, seed=seed))
        (ours,), quality = hash_from_samples(samples_from_pixels(pixels, (width, height), 1))
        vector, expected_quality = pdqhash.compute(pixels)
        assert (ours, quality) == (_bits_to_hex(vector), expected_quality), (width, height)


def test_tiny_images_get_pdqs_empty_hash() -> None:
    for size in [(4, 100), (100, 4), (1, 1)]:
        data = encode(structured_rgb(*size), "PNG")
        assert hash_image(data, reduced_decode=True).hash == hash_image(data).hash == "0" * 64
