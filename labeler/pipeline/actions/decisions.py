"""What a person decides about a match, one function each, for every front end (CLI, HTTP API, consoles, hand-offs):

- `confirm(item)`: the match is real. The rule does everything it does for a certain match: its labels, and its
  takedown and report if it has them (those it already did are not done again). A match against a hash
  exchange's entry is confirmed to the exchange where its feedback is on (`exchange_feedback`).
- `reject(item)`: the match is wrong. Everything the decision did is reversed: labels negated, takedowns lifted,
  the review closed; a report already sent upstream cannot be withdrawn and says so. As a false positive, the
  bank entry can also be disabled for future matches (`disable-entry`, HMA's "disable bank content"), or the
  image added to the allow-list bank (`allow-list`), whose entries suppress matches (`screen`). The exchange
  whose entry matched is told, where its feedback is on.
- `label_negated(subject, values)`: a moderator took values off a subject (emitEvent, `labeler label negate`):
  every decision that published them is reversed the same way.

Reversals are outbox rows like the actions they undo: audited (who, when, why), retried, and shown by `explain`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from labeler.pipeline.actions.actioner import Actioner
from labeler.pipeline.actions.allow_list import AllowList
from labeler.pipeline.actions.exchange_feedback import NAME as EXCHANGE_FEEDBACK
from labeler.pipeline.actions.model import Action, ActionSpec
from labeler.pipeline.actions.plan import Intent, decision_key, evidence_rule, plan
from labeler.pipeline.actions.screen import Screen
from labeler.pipeline.review import ReviewError, ReviewItem, ReviewQueue

#: Kinds whose effects a reversal undoes (or, for a report, records that it cannot); a confirmation sent to an
#: exchange is answered with the opposite verdict.
REVERSIBLE: Final = ("label", "review", "takedown", "report", EXCHANGE_FEEDBACK)
#: What rejecting a match as a false positive can also do about future matches.
FALSE_POSITIVE: Final = ("disable-entry", "allow-list")


@dataclass(frozen=True)
class Verdict:
    """A decided review item and the actions the decision queued (confirm) or the reversals (reject)."""

    item: ReviewItem
    actions: list[Action]

    def to_json(self) -> dict[str, Any]:
        return {**self.item.to_json(), "actions": [a.to_json() for a in self.actions]}


class Decisions:
    def __init__(self, actioner: Actioner, reviews: ReviewQueue, screen: Screen, allow_list: AllowList) -> None:
        self.actioner = actioner
        self.reviews = reviews
        self.screen = screen
        self.allow_list = allow_list

    async def confirm(self, item_id: int, *, actor: str, note: str | None = None, via: str | None = None) -> Verdict:
        """Confirm a pending item (ReviewError if it is not pending) and carry out the rule's actions. `via` names
        the front end (console, cli, api, altitude) for the audit log."""
        item = await self.reviews.decide(item_id, confirm=True, actor=actor, note=note, via=via)
        evidence = {**item.evidence, "review": {"item_id": item.id, "decided_by": actor, "note": note}}
        rule = evidence_rule(item.evidence, item.vals)
        intent = Intent(actor, "review", note or f"confirmed review item {item.id}", respect_negations=False)
        key = _key(item)
        uri, cid = item.subject_uri, item.subject_cid
        specs = plan(evidence, rule, rule.confirmed_kinds(), key=key, subject_uri=uri, subject_cid=cid, intent=intent)
        specs += await self.actioner.exchange_feedback.plan(
            evidence, confirmed=True, key=key, actor=actor, note=note, subject_uri=uri, subject_cid=cid
        )
        return Verdict(item, await self.actioner.submit(specs, for_person=True))

    async def reject(
        self,
        item_id: int,
        *,
        actor: str,
        note: str | None = None,
        false_positive: str | None = None,
        via: str | None = None,
    ) -> Verdict:
        """Reject a pending item (ReviewError if it is not pending, or `false_positive` cannot be done) and reverse
        what its decision did; as a false positive, also disable the bank entry or allow-list the image. `via` as
        for `confirm`."""
        if false_positive not in (None, *FALSE_POSITIVE):
            raise ReviewError(f"false_positive must be one of {', '.join(FALSE_POSITIVE)}")
        if false_positive == "allow-list" and self.allow_list.bank is None:
            raise ReviewError("no allow-list bank is configured ([actions] allow_list_bank)")
        pending = await self.reviews.get(item_id)
        if pending.status != "pending":
            raise ReviewError(f"review item {item_id} is already {pending.status}")
        reason = f"review item {item_id} rejected by {actor}" + (f": {note}" if note else "")
        # Future matches first: if the matcher is down this fails, and the rejection can simply be repeated.
        if false_positive is not None:
            match = pending.evidence.get("match")
            if not isinstance(match, dict) or "bank" not in match or "entry_id" not in match:
                raise ReviewError(f"review item {item_id} names no bank entry, so there is no future match to stop")
            bank, entry = str(match["bank"]), str(match["entry_id"])
            if false_positive == "disable-entry":
                why = f"false positive: {reason}"
                await self.screen.set_state(bank, entry, "disabled", reason=why, actor=actor, via=via)
            else:
                await self.allow_list.add(pending.evidence, note=f"false positive of {bank} entry {entry}")
        item = await self.reviews.decide(item_id, confirm=False, actor=actor, note=note, via=via)
        key = _key(item)
        reversals = await self.reverse(key, actor=actor, reason=reason)
        told = await self.actioner.exchange_feedback.plan(
            item.evidence, confirmed=False, key=key, actor=actor, note=note,
            subject_uri=item.subject_uri, subject_cid=item.subject_cid,
        )  # fmt: skip
        return Verdict(item, reversals + await self.actioner.submit(told, for_person=True))

    async def label_negated(
        self, uri: str, cid: str | None, vals: Sequence[str], *, actor: str, note: str | None = None
    ) -> list[Action]:
        """Reverse every decision whose label actions put any of `vals` on the subject."""
        negated = set(vals)
        decisions = [
            action.decision
            for action in await self.actioner.outbox.list(kind="label", subject_uri=uri, limit=10_000)
            if action.op == "apply" and action.decision and action.subject_cid == cid
            and action.state != "cancelled" and negated & set(action.params.get("vals", []))
        ]  # fmt: skip
        reason = f"{', '.join(sorted(negated))} negated by {actor}" + (f": {note}" if note else "")
        reversals = []
        for decision in dict.fromkeys(decisions):
            reversals += await self.reverse(decision, actor=actor, reason=reason)
        return reversals

    async def reverse(self, decision: str, *, actor: str, reason: str) -> list[Action]:
        """Undo one decision's actions: cancel what never ran, queue (and start) a reversal of the rest."""

        def reversal(original: Action) -> ActionSpec:
            params: dict[str, Any] = {"reason": reason}
            if "subject" in original.params:
                params["subject"] = original.params["subject"]
            return ActionSpec(
                kind=original.kind,
                op="reverse",
                subject_uri=original.subject_uri,
                subject_cid=original.subject_cid,
                params=params,
                dedupe_key=f"reverse|{original.id}",
                actor=actor,
                decision=original.decision,
                job_id=original.job_id,
                rule=original.rule,
                evidence=original.evidence,
                notify=original.notify,
                reverses=original.id,
            )

        rows = await self.actioner.outbox.reverse(decision, reversal, kinds=REVERSIBLE, reason=reason)
        return await self.actioner.attempt_now(rows, for_person=True)


def _key(item: ReviewItem) -> str:
    """The decision a review item's verdict belongs to: the pipeline's, or for an item made by hand (which did
    nothing else) its own."""
    return decision_key(item.evidence) or f"review:{item.id}"
