"""The Actioner of one process: the outbox, the configured action kinds, and the runner that works the outbox.

`submit` is the one way an action comes to exist: rows first, then attempts. Local kinds (label, review) are
attempted at once by whoever queues them, so a job's labels are committed when the job finishes and a confirmed
review item's label is up when the command returns. Kinds that call out (takedown, report, webhook) go to this
process's runner if it has one, and otherwise get one attempt right away (a CLI command); so do all of a person's
decision, who waits to see what it did. A failure then waits in the outbox for the workers' runners, with backoff.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from labeler.exchanges.store import ExchangeStore
from labeler.identity.resolver import DidResolver
from labeler.labels.writer import LabelWriter
from labeler.pipeline.actions.altitude.handoff import AltitudeKind
from labeler.pipeline.actions.altitude.store import HandoffStore
from labeler.pipeline.actions.config import DEFAULT_TIMEOUT, ActionsConfig
from labeler.pipeline.actions.dispatch import Dispatcher
from labeler.pipeline.actions.exchange_feedback import ExchangeFeedbackKind
from labeler.pipeline.actions.label import LabelKind
from labeler.pipeline.actions.model import Action, ActionKind, ActionSpec
from labeler.pipeline.actions.outbox import Outbox
from labeler.pipeline.actions.report import ReportKind
from labeler.pipeline.actions.review import ReviewKind
from labeler.pipeline.actions.runner import OutboxRunner
from labeler.pipeline.actions.takedown import TakedownKind
from labeler.pipeline.actions.telemetry import ActionMetrics
from labeler.pipeline.actions.webhook import WebhookKind
from labeler.pipeline.fetcher import BlobFetcher
from labeler.pipeline.review import ReviewQueue


class Actioner:
    def __init__(
        self,
        config: ActionsConfig,
        *,
        engine: AsyncEngine,
        writer: LabelWriter,
        reviews: ReviewQueue,
        resolver: DidResolver,
        registry: CollectorRegistry,
        fetcher: BlobFetcher,
        exchanges: ExchangeStore,
        keys_dir: Path,
        allow_private: bool = False,
    ) -> None:
        self.config = config
        self.outbox = Outbox(engine)
        self.metrics = ActionMetrics(registry)
        self.webhook = WebhookKind(config.webhook, self.outbox, reviews) if config.webhook is not None else None
        attempts = config.max_attempts
        self.altitude = (
            AltitudeKind(
                config.altitude,
                store=HandoffStore(engine),
                reviews=reviews,
                fetcher=fetcher,
                child_safety_banks=config.child_safety_banks,
                max_attempts=attempts,
            )
            if config.altitude is not None
            else None
        )
        # Feedback to hash exchanges is switched on per exchange (in the database), so the kind is always here.
        self.exchange_feedback = ExchangeFeedbackKind(
            exchanges,
            keys_dir=keys_dir,
            max_attempts=attempts,
            timeout=DEFAULT_TIMEOUT,
            allow_private=allow_private,
        )
        self._remote: list[TakedownKind | ReportKind | WebhookKind | AltitudeKind | ExchangeFeedbackKind] = [
            self.exchange_feedback
        ]
        if config.takedown is not None:
            self._remote.append(TakedownKind(config.takedown, resolver, max_attempts=attempts))
        if config.report is not None:
            self._remote.append(ReportKind(config.report, resolver, max_attempts=attempts, allow_private=allow_private))
        if self.webhook is not None:
            self._remote.append(self.webhook)
        if self.altitude is not None:
            self._remote.append(self.altitude)
        kinds: list[ActionKind] = [
            LabelKind(engine, writer, self.outbox, max_attempts=attempts),
            ReviewKind(reviews, max_attempts=attempts),
            *self._remote,
        ]
        self.kinds: dict[str, ActionKind] = {kind.name: kind for kind in kinds}
        self.dispatcher = Dispatcher(self.outbox, self.kinds, config, self.metrics, self._followups)
        self.runner = OutboxRunner(
            self.outbox, self.dispatcher, concurrency=config.concurrency, lease_seconds=config.lease_seconds
        )

    def _followups(self, action: Action) -> list[ActionSpec]:
        handlers = [h for h in (self.webhook, self.altitude) if h is not None]
        return [spec for handler in handlers for spec in handler.followups(action)]

    async def submit(self, specs: Sequence[ActionSpec], *, for_person: bool = False) -> list[Action]:
        """Queue `specs` and attempt what this process attempts at once; the rows as they are afterwards.

        `for_person`: someone waits for the outcome (a moderator's decision), so every kind gets its first
        attempt right here; a failure still waits in the outbox for the runners."""
        rows, claimed = await self.outbox.submit(
            specs, claim=lambda spec: self._inline(spec.kind, for_person), lease_seconds=self.config.lease_seconds
        )
        return await self._attempt([a for a in rows if a.id in claimed], rows)

    async def attempt_now(self, rows: Sequence[Action], *, for_person: bool = False) -> list[Action]:
        """Attempt the pending `rows` this process should attempt itself (see `submit`)."""
        mine = [a.id for a in rows if a.state == "pending" and self._inline(a.kind, for_person)]
        lease = self.config.lease_seconds
        claimed = await self.outbox.claim(ids=mine, limit=len(mine), lease_seconds=lease) if mine else []
        return await self._attempt(claimed, rows)

    async def _attempt(self, claimed: Sequence[Action], rows: Sequence[Action]) -> list[Action]:
        for action in claimed:
            await self.dispatcher.attempt(action)
        if self.runner.running and len(claimed) < sum(1 for a in rows if not a.finished):
            self.runner.wake()
        return await self.outbox.many([a.id for a in rows])

    def _inline(self, kind: str, for_person: bool) -> bool:
        handler = self.kinds.get(kind)
        return handler is not None and (handler.local or for_person or not self.runner.running)

    def start(self) -> None:
        self.runner.start()

    async def aclose(self, *, grace: float) -> None:
        """Stop the runner (attempts in flight get `grace` seconds to finish) and close the kinds' clients."""
        await self.runner.stop(grace)
        for kind in self._remote:
            await kind.aclose()
