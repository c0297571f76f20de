"""The running labeler's parts, built from Settings and wired together once: engine, store, keys, writer, hub.

Both the HTTP app and the CLI use this, so a label written from the CLI takes the same path as one from the API.
"""

from __future__ import annotations

import logging

from labeler.config import Settings
from labeler.keys import Keyring
from labeler.labels.hub import StreamHub
from labeler.labels.resign import Resigner
from labeler.labels.writer import LabelWriter
from labeler.metrics import Metrics
from labeler.store.engine import create_engine
from labeler.store.labels import CommitResult, LabelStore
from labeler.store.migrate import upgrade

log = logging.getLogger(__name__)


class Labeler:
    """Owns the parts' lifecycles: `await start()` before use, `await aclose()` to finish in-flight work."""

    def __init__(self, settings: Settings, *, with_hub: bool = True) -> None:
        self.settings = settings
        self.engine = create_engine(settings.database_url)
        self.store = LabelStore(self.engine)
        self.keyring = Keyring.open(settings.keys_dir)
        self.resigner = Resigner(self.store, self.keyring)
        self.hub: StreamHub | None = (
            StreamHub(
                self.store,
                self.resigner,
                buffer_size=settings.subscriber_buffer,
                page_size=settings.backfill_page_size,
            )
            if with_hub
            else None
        )
        self.metrics = Metrics(lambda: self.hub)
        self.writer = LabelWriter(
            self.store,
            self.keyring,
            settings.did,
            on_commit=self._on_commit,
            max_batch=settings.writer_max_batch,
        )

    def _on_commit(self, result: CommitResult) -> None:
        if self.hub is not None:
            self.hub.publish(result)
        self.metrics.on_commit(result)

    async def start(self, *, migrate: bool = True, create_dev_key: bool = True) -> None:
        if migrate:
            await upgrade(self.engine)
        if create_dev_key:
            info, created = self.keyring.ensure_active()
            if created:
                log.warning(
                    "generated a development label key %s (%s) in %s", info.id, info.did_key, self.keyring.directory
                )
        if self.hub is not None:
            await self.hub.start()
        await self.writer.start()

    async def aclose(self) -> None:
        await self.writer.aclose()
        if self.hub is not None:
            await self.hub.aclose()
        await self.engine.dispose()
