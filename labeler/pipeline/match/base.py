"""The Matcher interface both implementations share, its result type and its two errors.

Policy, the job runner and the benchmarks see only these names, never httpx or numpy, so `hma` and
`embedded` are interchangeable. Errors:

    MatchFailure            any failed lookup; `retryable` says whether a later try can succeed
    ├── MatcherUnavailable  retryable: HMA down, 5xx/503 index not loaded, timeouts, refused connections
    └── MatcherError        not retryable: bad request (400/422), wrong configuration, unexpected response
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Protocol, runtime_checkable

from labeler.config import HMA_MAX_DISTANCE
from labeler.pipeline.signals import PDQ, VPDQ
from labeler.pipeline.signals.vpdq import Similarity, VpdqFeature

DEFAULT_MAX_DISTANCE: Final = HMA_MAX_DISTANCE
READY_TIMEOUT: Final = 2.0


@dataclass(frozen=True, slots=True)
class Match:
    """One bank entry that a hash of the blob matched, by the signal type's own rule.

    `distance` is the Hamming distance for PDQ, 0 for exact signals (MD5, SHA-256), and for vPDQ the frame distance
    at which the video still meets the match thresholds (`similarity` has the percentages).
    `entry_id` is HMA's `bank_content_id` (as a string) or our own bank entry id.
    `external_id`/`note` are filled when the source knows them (the embedded index; HMA lookups do not).
    """

    bank: str
    entry_id: str
    distance: int
    external_id: str | None = None
    note: str | None = None
    signal_type: str = PDQ
    similarity: Similarity | None = None


class MatchFailure(Exception):
    """A lookup or bank call failed; `status` is the HTTP status when there was one."""

    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_failure, (type(self), self.message, self.status))


class MatcherUnavailable(MatchFailure):
    """The matcher cannot answer now (down, index not loaded, timeout); retry later with backoff."""

    retryable = True


class MatcherError(MatchFailure):
    """The matcher refused the request or answered nonsense; retrying the same call will not help."""


def _rebuild_failure(cls: type[MatchFailure], message: str, status: int | None) -> MatchFailure:
    return cls(message, status=status)


@runtime_checkable
class Matcher(Protocol):
    """Looks up hashes in banks. Implementations: `hma.HmaMatcher`, `embedded.EmbeddedMatcher`."""

    #: The signal types this matcher can look up (`signals.SIGNAL_TYPES`); others are skipped, not errors.
    signal_types: frozenset[str]

    async def lookup(self, pdq_hex: str, *, max_distance: int = DEFAULT_MAX_DISTANCE) -> list[Match]:
        """All bank entries within `max_distance` (inclusive) of a PDQ hash, nearest first."""
        ...

    async def lookup_exact(self, signal_type: str, value: str) -> list[Match]:
        """All bank entries holding exactly `value`, a hash of exact `signal_type` (MD5, SHA-256)."""
        ...

    async def lookup_vpdq(self, features: Sequence[VpdqFeature]) -> list[Match]:
        """Banked videos a video's vPDQ features match (pytx's rule; see `signals.vpdq`), nearest first."""
        ...

    async def ready(self) -> bool:
        """True when lookups can be answered now; never raises."""
        ...

    async def aclose(self) -> None:
        """Release connections or threads the matcher owns."""
        ...


async def matcher_ready(matcher: Matcher) -> bool:
    """`matcher.ready()`, or False when it takes longer than READY_TIMEOUT seconds (a hanging HMA must not hang
    the health check that reports it)."""
    try:
        return await asyncio.wait_for(matcher.ready(), READY_TIMEOUT)
    except TimeoutError:
        return False


def sort_matches(matches: Iterable[Match]) -> list[Match]:
    """The one ordering every matcher returns: distance, then bank, then entry id (then signal type)."""
    return sorted(matches, key=lambda m: (m.distance, m.bank, m.entry_id, m.signal_type))


async def lookup_variants(
    matcher: Matcher, pdq_hexes: Iterable[str], *, max_distance: int = DEFAULT_MAX_DISTANCE
) -> list[Match]:
    """Look up several hashes of one image (e.g. its 8 dihedral variants) and keep the nearest hit per entry.

    This is how rotated or mirrored copies of banked images are found; PDQ itself is not rotation-invariant.
    """
    best: dict[tuple[str, str], Match] = {}
    for pdq_hex in dict.fromkeys(pdq_hexes):
        for m in await matcher.lookup(pdq_hex, max_distance=max_distance):
            key = (m.bank, m.entry_id)
            if key not in best or m.distance < best[key].distance:
                best[key] = m
    return sort_matches(best.values())


async def lookup_signals(
    matcher: Matcher,
    *,
    pdq: Sequence[str] = (),
    exact: Mapping[str, str] | None = None,
    vpdq: Sequence[VpdqFeature] = (),
    max_distance: int = DEFAULT_MAX_DISTANCE,
) -> list[Match]:
    """Every match of one blob's signals: its PDQ hashes (see `lookup_variants`), exact hashes and vPDQ features,
    nearest first.

    Signal types the matcher cannot look up are skipped: the blob is matched on what the banks can hold.
    """
    matches = await lookup_variants(matcher, pdq, max_distance=max_distance) if pdq else []
    for signal_type, value in (exact or {}).items():
        if signal_type in matcher.signal_types:
            matches += await matcher.lookup_exact(signal_type, value)
    if vpdq and VPDQ in matcher.signal_types:
        matches += await matcher.lookup_vpdq(vpdq)
    return sort_matches(matches)
