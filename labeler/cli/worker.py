"""`labeler worker`: run pipeline workers without the API server (e.g. several worker processes on PostgreSQL); its
own /metrics when LABELER_METRICS_PORT is set."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING

import click

from labeler.cli._common import run, settings_or_exit
from labeler.cli._label_key import refuse_unpublished_dev_key
from labeler.cli._metrics import bind_metrics, metrics_note, metrics_port_option, metrics_served
from labeler.logs import configure_logging

if TYPE_CHECKING:
    from labeler.service import Labeler


@click.command()
@click.option("--workers", "count", type=click.IntRange(min=1), help="Concurrent workers (LABELER_WORKERS).")
@click.option("--drain", is_flag=True, help="Exit once no job or action is due or running (batch runs, tests).")
@metrics_port_option
def worker(count: int | None, drain: bool, metrics_port: int | None) -> None:
    """Process image jobs until stopped (SIGINT/SIGTERM finish the jobs in hand first)."""
    settings = settings_or_exit(**({} if metrics_port is None else {"metrics_port": metrics_port}))
    refuse_unpublished_dev_key(settings)
    configure_logging(settings.log_level, settings.log_format)
    workers = count or max(settings.workers, 1)
    listener = bind_metrics(settings)

    async def body() -> None:
        from labeler.service import Labeler  # imported when used: see labeler.cli

        labeler = Labeler(settings, with_hub=False)
        async with metrics_served(labeler, listener):  # answers from the start until the last job is done
            await work(labeler)

    async def work(labeler: Labeler) -> None:
        await labeler.start(exclusive=True, workers=workers, metrics=listener is not None)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        outcomes: dict[str, int] = {}
        try:
            await labeler.pipeline.hasher.start()  # started with the workers; ready before we say so
            hashing = len(labeler.pipeline.hasher.pool.pids)
            click.echo(
                f"labeler worker: {workers} worker(s), {hashing} hashing process(es), matcher {settings.matcher}"
                + metrics_note(settings, listener),
                err=True,
            )
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
                if drain:
                    # The backlog, as serve's gauges read it: no count of every done job, twice a second.
                    backlog = await labeler.pipeline.jobs.backlog()
                    if backlog.due == 0 and backlog.running == 0 and not await labeler.pipeline.actioner.outbox.busy():
                        break
        finally:
            await labeler.pipeline.aclose()  # graceful: the jobs in hand finish first
            with contextlib.suppress(Exception):
                outcomes = await labeler.pipeline.jobs.outcomes()
            await labeler.aclose()
        click.echo("jobs done: " + (", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "none"), err=True)

    run(body)
