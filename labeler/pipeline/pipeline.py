"""The pipeline's parts for one Labeler, built once from Settings: queue, cursors, banks, matcher, hasher, fetcher,
policy, review queue, the Actioner, and (when asked to run them) workers and the action outbox runner.

Building it is cheap: no process, connection or index is created until used, so short CLI commands pay
nothing. `start(workers=N)` starts the hashing processes (one per worker, at most one per CPU, unless
`[pipeline] hash_processes` says otherwise) and runs N workers in this process; `aclose()` stops them gracefully
first.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from labeler.config import Settings
from labeler.declaration import DEFAULT_LABEL, Declaration
from labeler.exchanges.store import ExchangeStore
from labeler.identity import DidResolver
from labeler.labels.writer import LabelWriter
from labeler.metrics import Metrics
from labeler.pipeline.actions.actioner import Actioner
from labeler.pipeline.actions.allow_list import AllowList
from labeler.pipeline.actions.altitude.poller import AltitudePoller
from labeler.pipeline.actions.applier import DecisionApplier
from labeler.pipeline.actions.config import check_policy, load_actions
from labeler.pipeline.actions.decisions import Decisions
from labeler.pipeline.actions.screen import Screen
from labeler.pipeline.backlog import BacklogGauges
from labeler.pipeline.bank_sync import SyncedBanks
from labeler.pipeline.banks import BankStore
from labeler.pipeline.cursors import CursorStore
from labeler.pipeline.fetcher import BlobFetcher, FetchedBlob
from labeler.pipeline.hashing import UPLOAD_PRIORITY, HashPool
from labeler.pipeline.jobs import JobQueue
from labeler.pipeline.match.base import Matcher
from labeler.pipeline.match.hma import HmaMatcher
from labeler.pipeline.options import load_options
from labeler.pipeline.policy import load_policy
from labeler.pipeline.procpool.pool import Limits
from labeler.pipeline.report_jobs import ReportIntake
from labeler.pipeline.review import ReviewQueue
from labeler.pipeline.runner import WorkerPool
from labeler.pipeline.signals.blob import BlobSignals, hash_blob
from labeler.pipeline.signals.video import VideoLimits, support_problem
from labeler.pipeline.signals.vpdq import Thresholds
from labeler.pipeline.telemetry import PipelineMetrics

log = logging.getLogger(__name__)


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        *,
        engine: AsyncEngine,
        writer: LabelWriter,
        resolver: DidResolver,
        metrics: Metrics,
        declaration: Declaration,
    ) -> None:
        self.settings = settings
        self.options = load_options(settings)
        self.actions_config = load_actions(settings.extra)
        self.policy = load_policy(
            settings.extra,
            default_label(declaration),
            child_safety_banks=self.actions_config.child_safety_banks,
            takedown=self.actions_config.takedown is not None,
            report=self.actions_config.report is not None,
        )
        check_policy(self.policy, self.actions_config)
        self.engine = engine
        self.jobs = JobQueue(engine)
        self.cursors = CursorStore(engine)
        self.banks = BankStore(engine)
        self.matcher: Matcher = (
            HmaMatcher(settings.hma_url)
            if settings.matcher == "hma"
            else SyncedBanks(self.banks, poll_interval=self.options.bank_poll_seconds, vpdq=vpdq_thresholds(settings))
        )
        self.hasher = HashPool(
            processes=self.options.processes_for(settings.workers),
            limits=Limits(timeout=settings.hash_timeout, memory_bytes=settings.hash_memory_mb << 20),
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            max_jpeg_scans=settings.max_jpeg_scans,
            reduced_decode=settings.reduced_decode,
            dihedral=settings.dihedral,
            video=VideoLimits(settings.max_video_pixels, settings.max_video_seconds, settings.vpdq_seconds_per_hash),
            video_timeout=settings.video_hash_timeout,
        )
        self.fetcher = BlobFetcher(
            resolver,
            max_bytes=settings.max_image_bytes,
            timeout=settings.fetch_timeout,
            max_video_bytes=settings.max_video_bytes,
            video_timeout=settings.video_fetch_timeout,
            allow_private=settings.allow_private_fetch,
        )
        self.reviews = ReviewQueue(engine)
        self.actioner = Actioner(
            self.actions_config,
            engine=engine,
            writer=writer,
            reviews=self.reviews,
            resolver=resolver,
            registry=metrics.registry,
            fetcher=self.fetcher,
            exchanges=ExchangeStore(engine, self.banks),
            keys_dir=settings.keys_dir,
            allow_private=settings.allow_private_fetch,
        )
        self.applier = DecisionApplier(self.actioner, matcher=settings.matcher, dihedral=settings.dihedral)
        self.screen = Screen(engine, self.actions_config, self.actioner.metrics)
        allow_list = AllowList(self.actions_config.allow_list_bank, self.matcher, self.banks)
        self.decisions = Decisions(self.actioner, self.reviews, self.screen, allow_list)
        self.altitude_poller = altitude_poller(self.actioner, self.reviews, self.decisions)
        self.reports = ReportIntake(engine, self.fetcher, self.jobs, self.options)
        self.telemetry = PipelineMetrics(metrics.registry)
        self.backlog = BacklogGauges(self.jobs, self.telemetry)
        self._workers: WorkerPool | None = None

    async def hash_upload(self, blob: FetchedBlob, media: str) -> BlobSignals:
        """Every signal of a blob for the upload-time check API: ahead of queued jobs, waiting at most
        `upload_max_wait` for a process. Raises `HasherCrashed` or `HasherBusy`."""
        return await hash_blob(
            self.hasher, blob, media, priority=UPLOAD_PRIORITY, max_wait=self.settings.upload_max_wait
        )

    async def start(self, *, workers: int, hashing: bool = False, gauges: bool = False) -> None:
        """Run `workers` job workers (and the action outbox runner) in this process; 0 runs none. The queue gauges
        are kept current with workers, or alone with `gauges` (a process that serves `/metrics`).

        The hashing processes start here too, sized from `workers` (not from settings): before the workers, which
        would otherwise hold claimed jobs' leases while waiting for them; in the background when only `hashing`
        (the upload API) asks for them, so the service answers health checks while they load.
        """
        if workers > 0 or gauges:
            self.backlog.start()
        if workers > 0:
            await self.hasher.start(self.options.processes_for(workers))
        elif hashing:
            self.hasher.launch(self.options.processes_for(1))
        if workers <= 0 or self._workers is not None:
            return
        problem = support_problem(self.settings.hash_memory_mb)
        if problem is not None:
            log.warning("videos may only be matched by MD5 and SHA-256: %s", problem)
        self._workers = WorkerPool(self, workers)
        self.jobs.on_enqueue = self._workers.wake
        self.reports.on_queued = self._workers.wake_reports
        self._workers.start()
        self.actioner.start()
        if self.altitude_poller is not None:
            self.altitude_poller.start()

    async def aclose(self) -> None:
        """Finish in-flight jobs and actions, then release the matcher, fetcher and hashing processes."""
        await self.backlog.stop()
        if self._workers is not None:
            await self._workers.stop()
            self._workers = None
            self.jobs.on_enqueue = None
            self.reports.on_queued = None
        if self.altitude_poller is not None:
            await self.altitude_poller.stop(self.options.stop_timeout_seconds)
        await self.actioner.aclose(grace=self.options.stop_timeout_seconds)
        await self.matcher.aclose()
        await self.fetcher.aclose()
        await self.hasher.aclose()


def altitude_poller(actioner: Actioner, reviews: ReviewQueue, decisions: Decisions) -> AltitudePoller | None:
    """The reader of Altitude's decisions, when review items go to Altitude; it runs where workers run."""
    kind = actioner.altitude
    if kind is None:
        return None
    return AltitudePoller(
        kind.api,
        kind.store,
        reviews,
        decisions,
        actioner.metrics.altitude_polls,
        poll_seconds=kind.config.poll_seconds,
        settle_seconds=kind.config.settle_seconds,
    )


def vpdq_thresholds(settings: Settings) -> Thresholds:
    """When a video matches a banked one: pytx's rule with our percentages, match distance and quality threshold."""
    return Thresholds(
        settings.vpdq_query_match_percent,
        settings.vpdq_compared_match_percent,
        settings.match_distance,
        settings.pdq_quality_threshold,
    )


def default_label(declaration: Declaration) -> str:
    """The value the default policy emits: the first declared label (`csam-hash-match` unless configured)."""
    return declaration.definitions[0].identifier if declaration.definitions else str(DEFAULT_LABEL["identifier"])
