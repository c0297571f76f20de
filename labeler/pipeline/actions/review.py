"""`review`: put the match in front of a person (`labeler.pipeline.review`); reversing closes an item still open.

What the person's decision then does is `labeler.pipeline.actions.decisions`.
"""

from __future__ import annotations

from typing import ClassVar

from labeler.pipeline.actions.model import Action, Outcome, done, skipped
from labeler.pipeline.review import ReviewError, ReviewQueue


class ReviewKind:
    name: ClassVar[str] = "review"
    local: ClassVar[bool] = True

    def __init__(self, reviews: ReviewQueue, *, max_attempts: int) -> None:
        self.reviews = reviews
        self.max_attempts = max_attempts

    async def apply(self, action: Action) -> Outcome:
        item_id, new = await self.reviews.add(
            action.job_id or 0, action.subject_uri, action.subject_cid, action.params["vals"], action.evidence or {}
        )
        if not new:
            return skipped("already", f"review item {item_id} exists", review_item=item_id)
        return done("queued", f"review item {item_id}", review_item=item_id)

    async def reverse(self, action: Action, original: Action) -> Outcome:
        item_id = (original.result or {}).get("review_item")
        if item_id is None:
            return skipped("nothing-to-reverse", "no review item was queued")
        try:
            await self.reviews.decide(item_id, confirm=False, actor=action.actor, note=action.params.get("reason"))
        except ReviewError as exc:
            return skipped("already-decided", str(exc))
        return done("closed", f"review item {item_id} rejected", review_item=item_id)
