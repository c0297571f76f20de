"""Stream sources that turn network events into jobs: the repo firehose and Jetstream.

`Sources` holds the ones the settings ask for (`firehose_url`, `jetstream_url`) and runs each as a task
that `labeler serve` or `labeler ingest` starts and stops. Reported subjects and the upload-time check API
are sources too, but they are driven by requests, not streams (`pipeline.report_jobs`, `xrpc.upload_api`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from labeler.config import ConfigError, Settings
from labeler.pipeline.jobs import JobQueue
from labeler.pipeline.sources.backpressure import Backpressure
from labeler.pipeline.sources.base import Cursors, StreamSource
from labeler.pipeline.sources.firehose import FirehoseSource
from labeler.pipeline.sources.jetstream import JetstreamSource

log = logging.getLogger(__name__)

STOP_TIMEOUT_S: Final = 10.0


class Sources:
    """The configured stream sources; building is cheap, `start()` connects, `aclose()` stops and saves."""

    def __init__(self, sources: list[StreamSource]) -> None:
        self.sources = sources
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def from_settings(cls, settings: Settings, jobs: JobQueue, cursors: Cursors) -> Sources:
        found: list[StreamSource] = []
        kinds = (("firehose_url", FirehoseSource), ("jetstream_url", JetstreamSource))
        bound = settings.ingest_max_pending_jobs
        for setting, kind in kinds:
            url = getattr(settings, setting)
            if url:
                gate = Backpressure(jobs, bound) if bound > 0 else None
                try:
                    found.append(kind(url, jobs, cursors, profiles=settings.ingest_profiles, backpressure=gate))
                except ValueError as exc:
                    raise ConfigError(f"LABELER_{setting.upper()}: {exc}") from None
        return cls(found)

    def start(self) -> None:
        for source in self.sources:
            if not any(t.get_name() == source.name for t in self._tasks):
                log.info("source %s starting", source.name)
                self._tasks.append(asyncio.create_task(source.run(), name=source.name))

    async def aclose(self) -> None:
        """Stop every source; each saves its pending jobs and cursor before its task ends."""
        for source in self.sources:
            await source.stop()
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
        for task in late:
            log.warning("source %s did not stop in %.0f s; cancelling", task.get_name(), STOP_TIMEOUT_S)
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["FirehoseSource", "JetstreamSource", "Sources", "StreamSource"]
