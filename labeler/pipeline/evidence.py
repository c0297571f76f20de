"""Evidence for pipeline decisions (design.md invariant 7): why a label or review item exists.

The same dict goes into the label event's `evidence` column and into review items, so `explain`, the review
API and the webhook all show one shape:

    {"kind": "hash-match", "job_id": 7, "source": "firehose", "subject": {"uri", "cid"},
     "image": {"did", "blob_cid", "mime_type", "media"}, "signal_type": "pdq" | "md5" | "sha256" | "vpdq",
     "pdq": "…", "quality": 92, "dihedral": false, "md5": "…", "sha256": "…", "video": {probe} | null,
     "match": {"bank", "entry_id", "external_id", "note", "distance", "signal_type", "similarity"?},
     "matcher": "embedded", "rule": {…policy rule…}, "kinds": ["label", …],
     "action": "label" | "review" | "takedown" | …}

`signal_type` says which of the blob's hashes matched; a vPDQ match's `similarity` has pytx's two percentages and
the frame counts (the video's frame hashes themselves stay on the job). Labels written before signal types existed
carry `"kind": "pdq-match"` and no signal fields; `summary` reads both. `kinds` are all the actions the decision
took; `action` is the one whose row (label event, review item, outbox row) carries this copy.
"""

from __future__ import annotations

from typing import Any, Final

from labeler.pipeline.actions.outbox import Outbox
from labeler.pipeline.jobs import Job, JobQueue
from labeler.pipeline.policy import Decision
from labeler.pipeline.review import ReviewQueue
from labeler.pipeline.signals import EXACT_SIGNALS, PDQ, VPDQ
from labeler.store.labels import LabelStore

KIND: Final = "hash-match"
_KINDS: Final = (KIND, "pdq-match")


def decision_evidence(job: Job, decision: Decision, *, matcher: str, dihedral: bool) -> dict[str, Any]:
    match = decision.match
    signals = job.signals or {}
    return {
        "kind": KIND,
        "job_id": job.id,
        "source": job.source,
        "subject": {"uri": job.subject_uri, "cid": job.subject_cid},
        "image": {
            "did": job.image.did,
            "blob_cid": job.image.blob_cid,
            "mime_type": job.image.mime_type,
            "media": job.image.media,
        },
        "signal_type": match.signal_type,
        "pdq": job.pdq,
        "quality": job.quality,
        "dihedral": dihedral,
        **{name: signals.get(name) for name in EXACT_SIGNALS},
        "video": signals.get("video"),
        "match": {
            "bank": match.bank,
            "entry_id": match.entry_id,
            "external_id": match.external_id,
            "note": match.note,
            "distance": match.distance,
            "signal_type": match.signal_type,
        }
        | ({"similarity": match.similarity.to_json()} if match.similarity is not None else {}),
        "matcher": matcher,
        "rule": decision.rule.to_json(),
        "kinds": list(decision.kinds),
        **({"held_for_review": decision.held} if decision.held else {}),
    }


def summary(evidence: dict[str, Any]) -> str:
    """One line for people: `pdq match: bank NCMEC entry 12 at distance 4 (rule default, job 7, image bafk…, …)`."""
    if evidence.get("kind") not in _KINDS:
        return ", ".join(f"{k}={v}" for k, v in evidence.items())
    match, rule = evidence.get("match", {}), evidence.get("rule", {})
    signal_type = evidence.get("signal_type", PDQ)
    similar = match.get("similarity") or {}
    if signal_type == PDQ:
        hashed = f"quality {evidence.get('quality')}"
    elif signal_type == VPDQ:
        hashed = (
            f"{similar.get('query_match_percent')}% of {similar.get('query_frames')} frames matched, "
            f"{similar.get('compared_match_percent')}% of the banked video's {similar.get('compared_frames')}"
        )
    else:
        hashed = f"{signal_type} {evidence.get(signal_type)}"
    text = (
        f"{signal_type} match: bank {match.get('bank')} entry {match.get('entry_id')} at distance "
        f"{match.get('distance')} (rule {rule.get('name')}, job {evidence.get('job_id')}, "
        f"image {evidence.get('image', {}).get('blob_cid')}, {hashed})"
    )
    review = evidence.get("review")
    if isinstance(review, dict):
        text += f"; confirmed in review #{review.get('item_id')} by {review.get('decided_by')}"
    return text


async def explain(
    store: LabelStore, jobs: JobQueue, reviews: ReviewQueue, uri: str, outbox: Outbox | None = None
) -> dict[str, Any]:
    """Everything we know about why `uri` carries (or carried) labels: current labels, history with evidence,
    the image jobs for it, its review items, and (given the outbox) every action taken on it with its outcome and
    reversal."""
    current = await store.query([uri], [], 0, 1000)
    history = await store.events_for(uri, limit=1000)
    subject_jobs = await jobs.for_subject(uri)
    acted: dict[int, Any] = {}
    if outbox is not None:
        acted = {a.id: a for a in await outbox.list(subject_uri=uri, limit=1000)}
        for job in subject_jobs:  # and those filed under the author's DID by account rules
            acted.update((a.id, a) for a in await outbox.list(job_id=job.id, limit=1000))
    return {
        "uri": uri,
        "labels": [{"seq": s.seq, **s.label.to_json()} for s in current],
        "history": [
            {
                "seq": e["seq"],
                "created_at": e["created_at"],
                "val": e["val"],
                "neg": bool(e["neg"]),
                "cid": e["cid"] or None,
                "actor": e["actor"],
                "via": e["via"],
                "reason": e["reason"],
                "evidence": e["evidence"],
            }
            for e in history
        ],
        "jobs": [j.to_json() for j in subject_jobs],
        "review_items": [i.to_json() for i in await reviews.list(status=None, subject_uri=uri, limit=1000)],
        "actions": [acted[i].to_json() for i in sorted(acted)],
    }
