"""vPDQ (video PDQ) hashes as python-threatexchange writes and compares them.

A vPDQ hash is a list of frame features: the PDQ hash of one frame every `seconds_per_hash` seconds, its quality
and its time. pytx's signal string (what HMA stores and exchanges send) is a JSON list of `"hex,quality,time"`
strings, the time written with 3 significant digits (`f"{t:.3}"`, so 123.4 s is `1.23e+02`); `to_signal` writes
exactly that, so our strings equal pytx's `VPDQSignal` strings.

Comparison follows pytx's `VPDQIndex`: each side keeps its frames of quality ≥ 50, one per distinct hash; a query
frame matches a bank frame within PDQ distance 31; the video matches when at least 80 % of the query's frames
match some bank frame and at least 0 % of the bank video's frames match some query frame (both thresholds
configurable). `similarity` also gives the smallest frame distance at which the thresholds are still met, so a
vPDQ match has a distance on PDQ's scale that policy rules can act on (≤ 10: frames are near-identical copies).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

QUALITY_THRESHOLD: Final = 50  # pytx VPDQ_QUALITY_THRESHOLD
FRAME_DISTANCE: Final = 31  # pytx VPDQ_DISTANCE_THRESHOLD (inclusive)
QUERY_MATCH_PERCENT: Final = 80.0  # pytx VPDQ_QUERY_MATCH_THRESHOLD_PERCENT
COMPARED_MATCH_PERCENT: Final = 0.0  # pytx VPDQ_INDEX_MATCH_THRESHOLD_PERCENT
MAX_FEATURES: Final = 100_000  # a signal string with more frames is junk, not a video someone banked

_HEX: Final = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class VpdqFeature:
    """One hashed frame: PDQ hash (64 lowercase hex), quality 0–100, time in seconds."""

    hex: str
    quality: int
    timestamp: float

    def __str__(self) -> str:
        return f"{self.hex},{self.quality},{self.timestamp:.3}"  # pytx's VpdqCompactFeature.__str__


def to_signal(features: Iterable[VpdqFeature]) -> str:
    """pytx's vPDQ signal string for `features`."""
    return json.dumps([str(f) for f in features])


def parse_signal(value: object) -> tuple[VpdqFeature, ...]:
    """Features from a signal string (or the list it encodes); ValueError for anything pytx would refuse."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as e:  # deep nesting is not a signal either
            raise ValueError(f"vPDQ signal is not JSON: {type(e).__name__}") from None
    if not isinstance(value, list) or not value or len(value) > MAX_FEATURES:
        raise ValueError(f"a vPDQ signal is a list of 1 to {MAX_FEATURES} frame features")
    return tuple(_feature(item) for item in value)


def signal_key(features: Sequence[VpdqFeature]) -> str:
    """SHA-256 of the canonical signal string: a bank's uniqueness key for a hash too long to index."""
    return hashlib.sha256(to_signal(features).encode()).hexdigest()


def _feature(item: object) -> VpdqFeature:
    if not isinstance(item, str) or len(item) > 200:
        raise ValueError(f"vPDQ feature must be 'hex,quality,time': {item!r:.80}")
    parts = item.split(",")
    if len(parts) != 3:
        raise ValueError(f"vPDQ feature must be 'hex,quality,time': {item!r:.80}")
    pdq, quality_text, time_text = parts
    pdq = pdq.strip().lower()
    try:
        quality, timestamp = int(quality_text), float(time_text)
    except ValueError:
        raise ValueError(f"vPDQ feature must be 'hex,quality,time': {item!r:.80}") from None
    if _HEX.fullmatch(pdq) is None or not 0 <= quality <= 100 or not math.isfinite(timestamp) or timestamp < 0:
        raise ValueError(f"invalid vPDQ feature {item!r:.80}")
    return VpdqFeature(pdq, quality, timestamp)


def prepared(features: Iterable[VpdqFeature], quality_threshold: int = QUALITY_THRESHOLD) -> tuple[str, ...]:
    """The frame hashes that take part in matching: quality ≥ threshold, each distinct hash once, in order
    (pytx `prepare_vpdq_feature`: filter, then dedupe)."""
    return tuple(dict.fromkeys(f.hex for f in features if f.quality >= quality_threshold))


@dataclass(frozen=True, slots=True)
class Thresholds:
    query_percent: float = QUERY_MATCH_PERCENT
    compared_percent: float = COMPARED_MATCH_PERCENT
    frame_distance: int = FRAME_DISTANCE
    quality: int = QUALITY_THRESHOLD


@dataclass(frozen=True, slots=True)
class Similarity:
    """How much of two videos matched: percentages at the threshold distance, and the smallest frame distance at
    which both percentage thresholds hold (`distance`)."""

    query_percent: float
    compared_percent: float
    distance: int
    query_frames: int
    compared_frames: int

    def to_json(self) -> dict[str, float | int]:
        return {
            "query_match_percent": round(self.query_percent, 2),
            "compared_match_percent": round(self.compared_percent, 2),
            "frame_distance": self.distance,
            "query_frames": self.query_frames,
            "compared_frames": self.compared_frames,
        }


def similarity(
    query_best: Mapping[str, int], compared_best: Mapping[str, int], n_query: int, n_compared: int, t: Thresholds
) -> Similarity | None:
    """The comparison of a query video with one bank video, given each side's frames that matched and their
    nearest distance (within `t.frame_distance`); None unless pytx would call it a match."""
    if not n_query or not n_compared:
        return None

    def percent(best: Iterable[int], n: int, within: int) -> float:
        return sum(1 for d in best if d <= within) * 100 / n

    query_percent = percent(query_best.values(), n_query, t.frame_distance)
    compared_percent = percent(compared_best.values(), n_compared, t.frame_distance)
    if query_percent < t.query_percent or compared_percent < t.compared_percent:
        return None
    distance = next(
        d
        for d in sorted({*query_best.values(), *compared_best.values(), t.frame_distance})
        if percent(query_best.values(), n_query, d) >= t.query_percent
        and percent(compared_best.values(), n_compared, d) >= t.compared_percent
    )
    return Similarity(query_percent, compared_percent, distance, n_query, n_compared)
