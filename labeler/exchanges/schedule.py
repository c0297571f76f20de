"""Fetching exchanges on a schedule in the worker processes, and on demand, one process per exchange at a time.

Every process running pipeline workers fetches the exchanges that are due (`[pipeline] exchange_fetch_seconds`
after their last fetch ended, or at once after one that stopped at `exchange_fetch_pages` pages), one at a time,
under a lease on the exchange's row that is renewed while the fetch runs; `labeler exchange fetch` takes the same
lease, so a fetch on demand never runs beside a scheduled one. A process that dies mid-fetch leaves a lease that
expires; the next taker resumes from the checkpoint.

Every serving or working process also keeps a snapshot of the exchanges for `/metrics` (`ExchangeCollector`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Final

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from labeler.exchanges.fetch import FetchReport, fetch_exchange, http_client
from labeler.exchanges.store import Exchange, ExchangeStore

log = logging.getLogger(__name__)

LEASE_SECONDS: Final = 300.0
_SNAPSHOT_SECONDS: Final = 30.0  # how often `/metrics`' view of the exchanges is read again


def process_owner() -> str:
    return f"{socket.gethostname()}/{os.getpid()}"


async def fetch_leased(
    store: ExchangeStore,
    *,
    owner: str,
    keys_dir: Path,
    http: httpx.AsyncClient,
    name: str | None = None,
    interval: float | None = None,
    max_pages: int,
    clock: Callable[[], float] = time.time,
) -> FetchReport | None:
    """Fetch exchange `name` (the next one due when None) under its lease, at most `max_pages` pages; None when
    another process holds it (or nothing is due). With `interval`, the exchange is due again that long after this
    fetch ends, or at once when it stopped at `max_pages` with more to read: behind the exchanges already due,
    which are taken in the order they fell due, so each gets its turn."""
    taken = await store.claim(owner, clock(), LEASE_SECONDS, name=name)
    if taken is None:
        return None

    async def renew() -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            await store.renew(taken, owner, clock() + LEASE_SECONDS)

    renewing = asyncio.create_task(renew(), name=f"exchange-lease-{taken}")
    report: FetchReport | None = None
    try:
        report = await fetch_exchange(store, taken, keys_dir=keys_dir, http=http, clock=clock, max_pages=max_pages)
    finally:
        await _cancel(renewing)
        due = None if interval is None else clock() + (0 if report is not None and report.more else interval)
        await store.release(taken, owner, due)
    return report


class ExchangeScheduler:
    """Scheduled fetches (when `fetching`) and the `/metrics` snapshot of one process."""

    def __init__(
        self, store: ExchangeStore, *, keys_dir: Path, allow_private: bool, interval: float, max_pages: int
    ) -> None:
        self.store = store
        self.snapshot: list[Exchange] = []
        self._keys_dir = keys_dir
        self._allow_private = allow_private
        self._interval = interval
        self._max_pages = max_pages
        self._fetching = False
        self._owner = process_owner()
        self._task: asyncio.Task[None] | None = None

    def start(self, *, fetching: bool) -> None:
        self._fetching = fetching and self._interval > 0
        self._task = asyncio.create_task(self._run(), name="exchanges")

    async def aclose(self) -> None:
        if self._task is not None:
            await _cancel(self._task)
            self._task = None

    async def _run(self) -> None:
        poll = min(_SNAPSHOT_SECONDS, self._interval) if self._fetching else _SNAPSHOT_SECONDS
        async with http_client(allow_private=self._allow_private) as http:
            while True:
                try:
                    self.snapshot = await self.store.all()
                    if self._fetching:
                        while await fetch_leased(
                            self.store, owner=self._owner, keys_dir=self._keys_dir, http=http,
                            interval=self._interval, max_pages=self._max_pages,
                        ):  # fmt: skip
                            self.snapshot = await self.store.all()
                except Exception:  # a database hiccup must not end the schedule; the next round tries again
                    log.exception("exchange schedule round failed")
                await asyncio.sleep(poll)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class ExchangeCollector(Collector):
    """Entries per bank and exchange, the last successful fetch and fetch errors, from the scheduler's snapshot."""

    def __init__(self, snapshot: Callable[[], list[Exchange]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        labels = ["exchange", "type", "bank"]
        entries = GaugeMetricFamily("labeler_exchange_entries", "Entries an exchange holds in its bank", labels=labels)
        success = GaugeMetricFamily(
            "labeler_exchange_last_success_timestamp_seconds", "When a fetch last reached the exchange's end",
            labels=labels,
        )  # fmt: skip
        errors = CounterMetricFamily(
            "labeler_exchange_fetch_errors", "Fetches stopped early and pages skipped", labels=labels
        )
        for e in self._snapshot():
            values = [e.name, e.type, e.bank]
            entries.add_metric(values, e.entries)
            errors.add_metric(values, e.fetch_errors)
            if e.last_success_at is not None:
                success.add_metric(values, datetime.fromisoformat(e.last_success_at).timestamp())
        yield from (entries, success, errors)
