"""Multi-index hashing over packed 256-bit PDQ hashes: the bucket tables and the exact probe (numpy only).

Why it is exact: the 256 bits are split into 12 chunks (four of 22 bits, eight of 21). If two hashes differ in
at most 35 bits, some chunk differs in at most 2 (pigeonhole: 12 chunks × 3 bits = 36). So probing, per chunk,
every bucket within 2 bits of the query's chunk finds every hash within 35; each candidate's true distance is
then checked with popcount. Thresholds up to 23 need only 1-bit neighbours and up to 11 only the exact buckets;
above 35 the probe scans. A small index buckets rows by only the low bits of each chunk (about log2(n) of them),
which keeps its bucket table small and stays exact: rows within 2 bits on a chunk are within 2 bits on its low
bits too.

At 10 M random hashes each bucket holds ~4 rows, so a probe at the PDQ threshold (31) reads ~2,800 buckets and
checks ~11,000 candidates (≈1.3 ms here) instead of scanning 10 M rows. Twelve 21-bit chunks beat sixteen 16-bit
ones (41,000 candidates, 5-10 ms) and eleven 23-bit ones (3,000 candidates but 50 % more memory for bucket
offsets): bench/README.md has the figures. Memory: a uint32 row id per chunk and row (48 bytes a hash) and one
bucket offset per bucket (134 MB from 2 M hashes up).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Final

import numpy as np

WIDTHS: Final = (22, 22, 22, 22, 21, 21, 21, 21, 21, 21, 21, 21)
_STARTS: Final = tuple(itertools.accumulate(WIDTHS, initial=0))[:-1]
# Largest distance the bucket probe answers exactly (see module docstring).
EXACT_UP_TO: Final = 3 * len(WIDTHS) - 1
_MIN_BITS: Final = 8


@dataclass(frozen=True, slots=True)
class Tables:
    """Per chunk, the rows sorted by bucket (`ids`, one run of n per chunk) and where each bucket starts."""

    ids: np.ndarray  # (12 * n,) uint32
    offsets: np.ndarray  # (Σ 2^bits + 1,) positions in `ids`; uint32 while they fit, else int64
    bits: tuple[int, ...]  # bucket bits per chunk (the chunk's low bits)
    n: int


def _bits_for(n: int) -> tuple[int, ...]:
    return tuple(min(width, max(_MIN_BITS, n.bit_length())) for width in WIDTHS)


@functools.cache
def _bases(bits: tuple[int, ...]) -> np.ndarray:
    """Where each chunk's buckets start in `offsets` (and the total, last)."""
    return np.array(tuple(itertools.accumulate((1 << b for b in bits), initial=0)), np.int64)


@functools.cache
def _plan(bits: tuple[int, ...], radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a radius: every chunk's flip masks (≤ radius bits set) concatenated, each mask's table base, the counts."""
    flips = [
        np.array([sum(1 << i for i in c) for k in range(radius + 1) for c in itertools.combinations(range(b), k)])
        for b in bits
    ]
    counts = np.array([len(f) for f in flips], np.int64)
    return np.concatenate(flips).astype(np.int64), np.repeat(_bases(bits)[:-1], counts), counts


def bucket_keys(words: np.ndarray, chunk: int, bits: int) -> np.ndarray:
    """The low `bits` bits of chunk `chunk` of each (…, 4) uint64 hash, as int64."""
    word, shift = divmod(_STARTS[chunk], 64)
    value = words[..., word] >> np.uint64(shift)
    if shift + bits > 64:
        value |= words[..., word + 1] << np.uint64(64 - shift)
    return (value & np.uint64((1 << bits) - 1)).astype(np.int64)


def build(words: np.ndarray, bits: tuple[int, ...] | None = None) -> Tables:
    """Tables over `words` ((n, 4) uint64), bucketed by `bits` low bits per chunk (by default about log2(n), up
    to the chunk's width). One argsort per chunk: ~7 s at 10 M on this machine."""
    n = len(words)
    bits = bits or _bits_for(n)
    if len(bits) != len(WIDTHS) or not all(_MIN_BITS <= b <= w for b, w in zip(bits, WIDTHS, strict=True)):
        raise ValueError(f"bucket bits must be {_MIN_BITS}..width per chunk: {bits}")
    bases = _bases(bits)
    total = len(WIDTHS) * n
    ids = np.empty(total, np.uint32)
    offsets = np.empty(int(bases[-1]) + 1, np.uint32 if total < 2**32 else np.int64)
    offsets[0] = 0
    for c, b in enumerate(bits):
        keys = bucket_keys(words, c, b)
        ids[c * n : (c + 1) * n] = np.argsort(keys)  # any order within a bucket will do
        lo, hi = bases[c] + 1, bases[c + 1] + 1
        offsets[lo:hi] = np.cumsum(np.bincount(keys, minlength=1 << b)) + c * n
    return Tables(ids, offsets, bits, n)


def scan(words: np.ndarray, q: np.ndarray, start: int, stop: int, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute force over rows [start, stop): (rows, distances) within max_distance."""
    if stop <= start:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    d = np.bitwise_count(words[start:stop] ^ q).sum(axis=1, dtype=np.int64)
    hit = np.flatnonzero(d <= max_distance)
    return hit + start, d[hit]


def probe(tables: Tables, words: np.ndarray, q: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows [0, tables.n) of `words` within `max_distance` of `q` ((4,) uint64), each once, with distances.

    Exact for any threshold: above `EXACT_UP_TO`, or when clustered data would make the probe touch more rows
    than a scan, it scans."""
    n = tables.n
    if max_distance > EXACT_UP_TO:
        return scan(words, q, 0, n, max_distance)
    flips, bases, counts = _plan(tables.bits, max_distance // len(WIDTHS))
    values = np.array([bucket_keys(q, c, b) for c, b in enumerate(tables.bits)], np.int64)
    buckets = bases + (np.repeat(values, counts) ^ flips)
    starts = tables.offsets[buckets].astype(np.int64)
    lengths = tables.offsets[buckets + 1] - starts
    total = int(lengths.sum())
    if total >= n:
        return scan(words, q, 0, n, max_distance)
    ends = np.cumsum(lengths)
    candidates = tables.ids[np.arange(total) + np.repeat(starts - (ends - lengths), lengths)]
    d = np.bitwise_count(words[candidates] ^ q).sum(axis=1, dtype=np.int64)
    hit = np.flatnonzero(d <= max_distance)
    # A row can sit in several probed buckets; hits are few, so de-duplicate only them.
    rows, first = np.unique(candidates[hit], return_index=True)
    return rows.astype(np.int64), d[hit[first]]
