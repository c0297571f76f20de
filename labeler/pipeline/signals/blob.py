"""One blob in hand → every signal it has; and a job's kept signals → what the matcher looks up.

Shared by the job runner (blobs fetched from a PDS) and the upload API (blobs posted to it), so both reach the
same answer for the same bytes. An image gets PDQ, a video vPDQ; bytes that cannot be hashed perceptually keep
their exact hashes and the reason, and are still matched by those.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from labeler.pipeline.fetcher import FetchedBlob
from labeler.pipeline.hasher import PdqResult
from labeler.pipeline.hashing import JOB_PRIORITY, HashPool
from labeler.pipeline.signals import CORRUPT, EXACT_SIGNALS, VIDEO, VPDQ, MediaRejected
from labeler.pipeline.signals.exact import ExactDigests
from labeler.pipeline.signals.video import VideoHash, VideoRejected
from labeler.pipeline.signals.vpdq import VpdqFeature, parse_signal, prepared


@dataclass(frozen=True)
class BlobSignals:
    """Every signal of one blob: its exact digests, and its PDQ (an image) or vPDQ (a video) hash, or why none."""

    exact: ExactDigests
    pdq: PdqResult | None = None
    video: VideoHash | None = None
    rejected: MediaRejected | None = None

    def pdq_columns(self) -> dict[str, Any]:
        """The job row's PDQ columns (`pdq`, `quality`, `variants`): empty for a blob without a PDQ hash."""
        if self.pdq is None:
            return {}
        variants = list(self.pdq.variants) if self.pdq.variants else None
        return {"pdq": self.pdq.hash, "quality": self.pdq.quality, "variants": variants}

    def kept(self) -> dict[str, Any]:
        """What a job row keeps beside its PDQ columns (`image_jobs.signals`)."""
        kept: dict[str, Any] = dict(self.exact.as_signals())
        if self.video is not None:
            kept.update({VPDQ: [str(f) for f in self.video.features], "video": self.video.info.to_json()})
        if self.rejected is not None:
            kept["rejected"] = {"reason": self.rejected.reason, "detail": self.rejected.detail}
        return kept


async def hash_blob(
    hasher: HashPool, blob: FetchedBlob, media: str, *, priority: int = JOB_PRIORITY, max_wait: float | None = None
) -> BlobSignals:
    """Hash `blob` as `media` says ("image" or "video") in the hashing pool. Raises only `HasherCrashed` and
    `HasherBusy` (no process free within `max_wait`)."""
    try:
        if media == VIDEO:
            if blob.path is None:
                raise VideoRejected(CORRUPT, "no file to read")  # only a caller's bug gets here
            video = await hasher.hash_video(blob.path, priority=priority, max_wait=max_wait)
            return BlobSignals(blob.digests, video=video)
        return BlobSignals(blob.digests, pdq=await hasher.hash(blob.data, priority=priority, max_wait=max_wait))
    except MediaRejected as exc:
        # Still matched by its exact hashes: a banked file need not decode.
        return BlobSignals(blob.digests, rejected=exc)


@dataclass(frozen=True)
class Lookup:
    """What to ask the matcher for one blob, from what was kept: PDQ hashes (all variants), exact hashes, vPDQ
    frames; `low_quality` when the perceptual hash is below the quality threshold (not looked up); `rejected` when
    there is none ({"reason", "detail"})."""

    pdq: list[str]
    exact: dict[str, str]
    vpdq: tuple[VpdqFeature, ...]
    low_quality: bool
    rejected: Mapping[str, Any] | None


def lookup_from(
    *,
    kept: Mapping[str, Any] | None,
    quality_threshold: int,
    pdq: str | None = None,
    quality: int | None = None,
    variants: Sequence[str] | None = None,
) -> Lookup:
    kept = kept or {}
    frames = parse_signal(kept[VPDQ]) if kept.get(VPDQ) else ()
    low_quality = (quality is not None and quality < quality_threshold) or (
        bool(frames) and not prepared(frames, quality_threshold)
    )
    rejected = kept.get("rejected")
    return Lookup(
        pdq=[] if pdq is None or low_quality else list(variants or [pdq]),
        exact={name: kept[name] for name in EXACT_SIGNALS if isinstance(kept.get(name), str)},
        vpdq=() if low_quality else frames,
        low_quality=low_quality,
        rejected=rejected if isinstance(rejected, Mapping) else None,
    )
