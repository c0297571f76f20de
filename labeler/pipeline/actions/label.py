"""`label`: publish the decision's label values through the writer; reversing negates what it published.

A value the subject already carries in its current state is not written again: a second image of the same post
adds nothing. For the pipeline (`respect_negations`) a value a moderator negated counts as present too, so the
pipeline never overrides a person; a person's own confirmation is written whatever the current state. A
reversal negates the values the decision stood behind (wrote, or found already up) that are still up, that a
label action wrote (a moderator's own label stays), and that no other live decision on the subject stands behind:
so of two images of one post that matched, the label comes down with the second one's reversal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from labeler.labels.writer import LabelRequest, LabelWriter
from labeler.pipeline.actions.model import Action, Outcome, done, refused, skipped
from labeler.pipeline.actions.outbox import Outbox
from labeler.protocol.label import InvalidLabel
from labeler.store.schema import labels


class LabelKind:
    name: ClassVar[str] = "label"
    local: ClassVar[bool] = True

    def __init__(self, engine: AsyncEngine, writer: LabelWriter, outbox: Outbox, *, max_attempts: int) -> None:
        self.engine = engine
        self.writer = writer
        self.outbox = outbox
        self.max_attempts = max_attempts

    async def apply(self, action: Action) -> Outcome:
        vals: list[str] = list(action.params["vals"])
        current = await self._current(action.subject_uri, action.subject_cid, vals)
        if action.params.get("respect_negations", True):
            present = set(current)
        else:
            present = {val for val, negated in current.items() if not negated}
        new = [val for val in vals if val not in present]
        if not new:
            return skipped("already", "the subject carries these values already", written=[], already=sorted(present))
        requests = [
            LabelRequest(
                uri=action.subject_uri,
                cid=action.subject_cid,
                val=val,
                actor=action.actor,
                via=str(action.params.get("via", "pipeline")),
                reason=action.params.get("reason"),
                evidence=action.evidence,
            )
            for val in new
        ]
        try:
            stored = await self.writer.write(requests)
        except InvalidLabel as exc:
            return refused("invalid-label", str(exc))
        return done("labelled", written=new, already=sorted(present), seqs=[s.seq for s in stored])

    async def reverse(self, action: Action, original: Action) -> Outcome:
        result = original.result or {}
        behind = [*result.get("written", []), *result.get("already", [])]
        current = await self._current(original.subject_uri, original.subject_cid, behind)
        up = [val for val in dict.fromkeys(behind) if current.get(val) is False]
        ours, kept = await self._others(original, up)
        negate = [val for val in up if val in ours and val not in kept]
        if not negate:
            why = (
                f"other live decisions also label {', '.join(kept)}" if kept else "nothing this decision labelled is up"
            )
            return skipped("still-justified" if kept else "nothing-to-reverse", why, kept=kept)
        requests = [
            LabelRequest(
                uri=original.subject_uri,
                cid=original.subject_cid,
                val=val,
                neg=True,
                actor=action.actor,
                via="reversal",
                reason=action.params.get("reason"),
                evidence={"reverses_action": original.id, "decision": original.decision},
            )
            for val in negate
        ]
        stored = await self.writer.write(requests)
        return done("negated", negated=negate, kept=kept, seqs=[s.seq for s in stored])

    async def _current(self, uri: str, cid: str | None, vals: Sequence[str]) -> dict[str, bool]:
        """Each value's current state on the subject: True if negated, False if up; absent if never labelled."""
        query = sa.select(labels.c.val, labels.c.neg).where(
            labels.c.src == self.writer.src, labels.c.uri == uri, labels.c.cid == (cid or ""), labels.c.val.in_(vals)
        )
        async with self.engine.connect() as conn:
            return {val: bool(neg) for val, neg in await conn.execute(query)}

    async def _others(self, original: Action, vals: Sequence[str]) -> tuple[set[str], list[str]]:
        """Of `vals`: those some label action on the subject wrote (so not a moderator's own label), and those
        another decision's live label action still stands behind (wrote, or found already there)."""
        ours: set[str] = set()
        kept: set[str] = set()
        for other in await self.outbox.list(kind="label", subject_uri=original.subject_uri, limit=10_000):
            if other.op != "apply" or other.subject_cid != original.subject_cid:
                continue
            result = other.result or {}
            ours.update(v for v in result.get("written", []) if v in vals)
            live = other.reversed_by is None and other.state in ("done", "skipped")
            if other.id != original.id and live:
                kept.update(v for v in (*result.get("written", []), *result.get("already", [])) if v in vals)
        return ours, sorted(kept)
