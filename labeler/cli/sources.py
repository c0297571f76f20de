"""`labeler ingest`: follow the configured firehose / Jetstream and queue image jobs, without serving HTTP.

`labeler serve` runs the same sources in-process; this command is for running them apart (next to
`labeler worker` processes on PostgreSQL, say). It stops on SIGINT/SIGTERM after saving pending jobs and cursors.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import click

from labeler.cli._common import run, settings_or_exit
from labeler.cli._label_key import refuse_unpublished_dev_key
from labeler.config import Settings
from labeler.logs import configure_logging


@click.command()
@click.option(
    "--workers", type=int, default=0, show_default=True, help="Also run this many pipeline workers in this process."
)
def ingest(workers: int) -> None:
    """Queue image jobs from LABELER_FIREHOSE_URL and/or LABELER_JETSTREAM_URL until stopped."""
    settings = settings_or_exit()
    if not settings.firehose_url and not settings.jetstream_url:
        raise click.ClickException("nothing to ingest: set LABELER_FIREHOSE_URL or LABELER_JETSTREAM_URL")
    if workers > 0:  # as create_dev_key below: workers sign labels, sources alone do not
        refuse_unpublished_dev_key(settings)
    configure_logging(settings.log_level, settings.log_format)
    run(lambda: _ingest(settings, workers))


async def _ingest(settings: Settings, workers: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    from labeler.service import Labeler  # imported when used: see labeler.cli

    labeler = Labeler(settings, with_hub=False)
    try:
        # Workers sign labels, so they need a key; sources alone do not.
        await labeler.start(exclusive=True, create_dev_key=workers > 0, workers=workers, sources=True)
        names = ", ".join(s.name for s in labeler.sources.sources)
        hashing = ""
        if workers > 0:
            await labeler.pipeline.hasher.start()  # started with the workers; ready before we say so
            hashing = f", {len(labeler.pipeline.hasher.pool.pids)} hashing processes"
        click.echo(f"ingesting from {names} ({workers} workers{hashing}); Ctrl-C to stop")
        await stop.wait()
    finally:
        await labeler.aclose()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
