"""The running labeler's parts, built from Settings and wired together once: engine, store, keys, writer, hub.

Both the HTTP app and the CLI use this, so a label written from the CLI takes the same path as one from the API.
"""

from __future__ import annotations

import logging

from labeler.config import Settings
from labeler.declaration import load_declaration
from labeler.exchanges.schedule import ExchangeCollector, ExchangeScheduler
from labeler.exchanges.store import ExchangeStore
from labeler.identity import DidResolver
from labeler.keys import Keyring
from labeler.labels.hub import StreamHub
from labeler.labels.resign import Resigner
from labeler.labels.writer import LabelWriter
from labeler.metrics import Metrics
from labeler.pipeline.pipeline import Pipeline
from labeler.pipeline.sources import Sources
from labeler.pipeline.sources.telemetry import SourceCollector
from labeler.reports import ReportService, ReportStore
from labeler.single_process import ProcessLock, lock_path_for
from labeler.store.engine import create_engine
from labeler.store.labels import CommitResult, LabelStore
from labeler.store.migrate import upgrade
from labeler.store.token_uses import TokenUses

log = logging.getLogger(__name__)


class Labeler:
    """Owns the parts' lifecycles: `await start()` before use, `await aclose()` to finish in-flight work."""

    def __init__(self, settings: Settings, *, with_hub: bool = True) -> None:
        self.settings = settings
        self.engine = create_engine(settings.database_url)
        self.store = LabelStore(self.engine)
        self.keyring = Keyring.open(settings.keys_dir)
        self.resigner = Resigner(self.store, self.keyring, settings.did)
        self.hub: StreamHub | None = (
            StreamHub(
                self.store,
                self.resigner,
                buffer_size=settings.subscriber_buffer,
                page_size=settings.backfill_page_size,
                fan_out_threads=settings.fan_out_threads,
                max_subscribers=settings.max_subscribers,
                max_subscribers_per_client=settings.max_subscribers_per_client,
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
        # Verifying service tokens (createReport, moderators): one resolver cache; used tokens in the database.
        self.resolver = DidResolver(
            plc_url=settings.plc_url,
            allow_insecure_did_web=settings.allow_insecure_did_web,
            allow_private=settings.allow_private_fetch,
        )
        self.replay = TokenUses(self.engine)
        self.reports = ReportService(ReportStore(self.engine), load_declaration(settings))
        # The image pipeline; reported posts' images become jobs.
        self.pipeline = Pipeline(
            settings,
            engine=self.engine,
            writer=self.writer,
            resolver=self.resolver,
            metrics=self.metrics,
            declaration=self.reports.declaration,
        )
        self.reports.on_report(self.pipeline.reports.on_report)
        # Hash exchanges filling banks: fetched on a schedule where pipeline workers run, shown on /metrics.
        self.exchanges = ExchangeScheduler(
            ExchangeStore(self.engine, self.pipeline.banks),
            keys_dir=settings.keys_dir,
            allow_private=settings.allow_private_fetch,
            interval=self.pipeline.options.exchange_fetch_seconds,
            max_pages=self.pipeline.options.exchange_fetch_pages,
        )
        self.metrics.registry.register(ExchangeCollector(lambda: self.exchanges.snapshot))
        # Firehose / Jetstream consumers (when configured); they run only when `start(sources=True)`.
        self.sources = Sources.from_settings(settings, self.pipeline.jobs, self.pipeline.cursors)
        self.metrics.registry.register(SourceCollector(lambda: self.sources.sources))
        self._process_lock: ProcessLock | None = None

    def _on_commit(self, result: CommitResult) -> None:
        if self.hub is not None:
            self.hub.publish(result)
        self.metrics.on_commit(result)

    async def start(
        self,
        *,
        migrate: bool = True,
        create_dev_key: bool = True,
        exclusive: bool | None = None,
        workers: int = 0,
        sources: bool = False,
        hashing: bool = False,
        metrics: bool = False,
    ) -> None:
        """`exclusive` (default: when this process serves streams) takes the one-process lock on a SQLite file;
        long-running `serve`/`worker` need it, short CLI commands do not. `workers` pipeline workers run here;
        the hashing processes start with them, or alone with `hashing` (for the upload API). `metrics`: this
        process serves `/metrics` without serving streams (a metrics listener), so it keeps the database's
        figures (queue, exchanges) current too, as `serve` does."""
        lock_path = lock_path_for(self.settings.database_url)
        if (
            lock_path is not None
            and self._process_lock is None
            and (self.hub is not None if exclusive is None else exclusive)
        ):
            lock = ProcessLock(lock_path)
            lock.acquire()  # before anything touches the file, so a second process changes nothing
            self._process_lock = lock
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
        serves_metrics = metrics or self.hub is not None
        await self.pipeline.start(workers=workers, hashing=hashing, gauges=serves_metrics)
        if sources:
            self.sources.start()
        if workers or serves_metrics:
            self.exchanges.start(fetching=workers > 0)

    async def aclose(self) -> None:
        try:
            await self.sources.aclose()  # saves pending jobs and cursors while the database is still open
            await self.exchanges.aclose()  # a fetch stopped mid-page resumes from its checkpoint
            await self.pipeline.aclose()  # in-flight jobs still write through the writer
            await self.writer.aclose()
            if self.hub is not None:
                await self.hub.aclose()
            await self.resolver.aclose()
            await self.engine.dispose()
        finally:
            if self._process_lock is not None:
                self._process_lock.release()
                self._process_lock = None
