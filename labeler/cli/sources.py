"""`labeler ingest`: follow the configured firehose / Jetstream and queue image jobs, without serving the API (only
its own /metrics, when LABELER_METRICS_PORT is set).

`labeler serve` runs the same sources in-process; this command is for running them apart (next to
`labeler worker` processes on PostgreSQL, say). It stops on SIGINT/SIGTERM after saving pending jobs and cursors.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket

import click

from labeler.cli._common import run, settings_or_exit
from labeler.cli._label_key import refuse_unpublished_dev_key
from labeler.cli._metrics import bind_metrics, metrics_note, metrics_port_option, metrics_served
from labeler.config import Settings
from labeler.logs import configure_logging


@click.command()
@click.option(
    "--workers", type=int, default=0, show_default=True, help="Also run this many pipeline workers in this process."
)
@metrics_port_option
def ingest(workers: int, metrics_port: int | None) -> None:
    """Queue image jobs from LABELER_FIREHOSE_URL and/or LABELER_JETSTREAM_URL until stopped."""
    settings = settings_or_exit(**({} if metrics_port is None else {"metrics_port": metrics_port}))
    if not settings.firehose_url and not settings.jetstream_url:
        raise click.ClickException("nothing to ingest: set LABELER_FIREHOSE_URL or LABELER_JETSTREAM_URL")
    if workers > 0:  # as create_dev_key below: workers sign labels, sources alone do not
        refuse_unpublished_dev_key(settings)
    configure_logging(settings.log_level, settings.log_format)
    listener = bind_metrics(settings)
    run(lambda: _ingest(settings, workers, listener))


async def _ingest(settings: Settings, workers: int, listener: socket.socket | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    from labeler.service import Labeler  # imported when used: see labeler.cli

    labeler = Labeler(settings, with_hub=False)
    try:
        async with metrics_served(labeler, listener):  # answers from the start until the cursors are saved
            try:
                # Workers sign labels, so they need a key; sources alone do not.
                await labeler.start(
                    exclusive=True, create_dev_key=workers > 0, workers=workers, sources=True,
                    metrics=listener is not None,
                )  # fmt: skip
                names = ", ".join(s.name for s in labeler.sources.sources)
                hashing = ""
                if workers > 0:
                    await labeler.pipeline.hasher.start()  # started with the workers; ready before we say so
                    hashing = f", {len(labeler.pipeline.hasher.pool.pids)} hashing processes"
                metrics = metrics_note(settings, listener)
                click.echo(f"ingesting from {names} ({workers} workers{hashing}{metrics}); Ctrl-C to stop")
                await stop.wait()
            finally:
                await labeler.aclose()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
