"""Reads Altitude's decisions back: every `poll_seconds`, each filed case still open is read (`GET /cases/{id}`),
longest-unread first, and a settled decision decides our review item the way a moderator's would
(`labeler.pipeline.actions.decisions`): BLOCK confirms it (the rule's labels, takedown, report), APPROVE rejects it
(whatever the match did is reversed). The decider is recorded as `altitude`, with a note naming Altitude's case,
decision and reviewer.

Nothing is lost while Altitude is down: open cases stay open in `altitude_cases` and are read on a later round
(a metric and a log line say so). An item our own moderators decided first is closed without asking Altitude; a
case Altitude no longer has is closed as `gone` with an ERROR line, leaving our item for a person.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Callable
from typing import Final

from prometheus_client import Counter

from labeler.pipeline.actions.altitude.api import AltitudeApi, AltitudeError, AltitudeRefused
from labeler.pipeline.actions.altitude.store import Handoff, HandoffStore
from labeler.pipeline.actions.decisions import Decisions
from labeler.pipeline.review import ReviewError, ReviewQueue
from labeler.store.engine import StoreError

log = logging.getLogger(__name__)

ACTOR: Final = "altitude"
_BATCH: Final = 100


class AltitudePoller:
    def __init__(
        self,
        api: AltitudeApi,
        store: HandoffStore,
        reviews: ReviewQueue,
        decisions: Decisions,
        counter: Counter,
        *,
        poll_seconds: float,
        settle_seconds: float,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self.api = api
        self.store = store
        self.reviews = reviews
        self.decisions = decisions
        self.counter = counter
        self.poll_seconds = poll_seconds
        self.settle = datetime.timedelta(seconds=settle_seconds)
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="altitude-poller")

    async def stop(self, grace: float) -> None:
        """Let a round in progress finish (up to `grace` seconds: a decision half carried out is not cut short)."""
        if self._task is None:
            return
        self._stopping.set()
        with contextlib.suppress(TimeoutError):  # past the grace, wait_for cancels it
            await asyncio.wait_for(self._task, grace)
        self._task = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.poll_once()
            except StoreError as exc:
                log.warning("altitude: reading open cases failed (%s); next round in %.0fs", exc, self.poll_seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.poll_seconds)

    async def poll_once(self) -> int:
        """Read one batch of open cases; how many of our items it decided."""
        decided = 0
        for handoff in await self.store.open_cases(_BATCH):
            outcome = await self._poll(handoff)
            self.counter.labels(outcome=outcome).inc()
            decided += outcome in ("confirmed", "rejected")
        return decided

    async def _poll(self, handoff: Handoff) -> str:
        item_id, case_id = handoff.review_item, handoff.case_id or ""
        try:
            item = await self.reviews.get(item_id)
        except ReviewError:
            item = None
        if item is None or item.status != "pending":
            await self.store.close(item_id, "decided")
            return "decided-here"
        try:
            review = await self.api.latest_review(case_id)
        except AltitudeRefused as exc:
            log.error("altitude: case %s of item %d cannot be read (%s); left to a person", case_id, item_id, exc)
            await self.store.close(item_id, "gone")
            return "gone"
        except AltitudeError as exc:
            log.info("altitude: case %s of review item %d not read (%s); next round", case_id, item_id, exc)
            return "unavailable"
        if review is None or self.clock() - review.created < self.settle:
            return "open"
        note = f"via altitude: case {case_id} {review.decision}" + (f" by {review.user}" if review.user else "")
        try:
            if review.decision == "BLOCK":
                await self.decisions.confirm(item_id, actor=ACTOR, note=note, via=ACTOR)
            else:
                await self.decisions.reject(item_id, actor=ACTOR, note=note, via=ACTOR)
        except ReviewError:  # decided here between our read and now: the person's decision stands
            await self.store.close(item_id, "decided")
            return "decided-here"
        await self.store.close(item_id, review.decision)
        log.info("altitude: review item %d %s (%s)", item_id, review.decision, note)
        return "confirmed" if review.decision == "BLOCK" else "rejected"
