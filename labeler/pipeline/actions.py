"""Carrying out policy decisions: labels through the writer, review items into the queue, each with evidence.

A label the subject already carries in its current state, as a label or as a negation, is not written again:
a job that runs twice (lease expiry after a crash) or a second image of the same post adds nothing, and a
moderator's negation is not overridden by the pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from labeler.labels.writer import LabelRequest, LabelWriter
from labeler.pipeline.evidence import decision_evidence
from labeler.pipeline.jobs import Job
from labeler.pipeline.policy import Decision
from labeler.pipeline.review import ReviewQueue
from labeler.store.schema import labels


class DecisionApplier:
    def __init__(
        self, engine: AsyncEngine, writer: LabelWriter, reviews: ReviewQueue, *, matcher: str, dihedral: bool
    ) -> None:
        self.engine = engine
        self.writer = writer
        self.reviews = reviews
        self.matcher = matcher
        self.dihedral = dihedral

    async def apply(self, job: Job, decisions: Sequence[Decision]) -> list[dict[str, Any]]:
        """Act on every decision; returns what was done, for the job's recorded result."""
        done: list[dict[str, Any]] = []
        requests: list[LabelRequest] = []
        for decision in decisions:
            evidence = decision_evidence(job, decision, matcher=self.matcher, dihedral=self.dihedral)
            record: dict[str, Any] = {
                "rule": decision.rule.name,
                "action": decision.action,
                "subject": {"uri": decision.subject_uri, "cid": decision.subject_cid},
                "bank": decision.match.bank,
                "entry_id": decision.match.entry_id,
                "distance": decision.match.distance,
                "signal_type": decision.match.signal_type,
            }
            if decision.action == "label":
                present = await self._present(decision.subject_uri, decision.subject_cid, decision.rule.labels)
                new = [v for v in decision.rule.labels if v not in present]
                record.update(labels=new, already=sorted(present))
                match = decision.match
                reason = f"{match.signal_type} match: bank {match.bank}, distance {match.distance}"
                requests += [
                    LabelRequest(
                        uri=decision.subject_uri,
                        val=val,
                        cid=decision.subject_cid,
                        actor="pipeline",
                        via="pipeline",
                        reason=reason,
                        evidence=evidence,
                    )
                    for val in new
                ]
            else:
                item = await self.reviews.add(
                    job.id, decision.subject_uri, decision.subject_cid, decision.rule.labels, evidence
                )
                record.update(labels=list(decision.rule.labels), review_item=item)
            done.append(record)
        await self.writer.write(requests)
        return done

    async def _present(self, uri: str, cid: str | None, vals: Sequence[str]) -> set[str]:
        query = sa.select(labels.c.val).where(
            labels.c.src == self.writer.src, labels.c.uri == uri, labels.c.cid == (cid or ""), labels.c.val.in_(vals)
        )
        async with self.engine.connect() as conn:
            return set((await conn.execute(query)).scalars())
