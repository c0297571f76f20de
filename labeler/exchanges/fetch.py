"""One fetch of one exchange: pages from its client, each applied to the bank and then checkpointed.

A fetch stops at an auth failure or an outage with the checkpoint at the last applied page, records the error on
the exchange (`labeler exchange list`, `/metrics`), and the next fetch resumes there. A skipped page counts as an
error too, but the fetch goes on past it.

A page that cannot be read (UnreadablePage) stops the fetch the same way: one bad read (a truncated answer, a
glitch) must not cost its records. But a page that stays broken would stall the exchange for ever, so the fetches
in a row that stop at an unreadable page are counted in the checkpoint (`store.UNREADABLE`) until one reaches the
exchange's end, and from the `UNREADABLE_TRIES`th on the type is asked to skip what it cannot read: each does so
in the way its paging allows, reading again first what it can, logged and counted like any skip. The count is not
reset by pages applied before the unreadable one: a fetch that resumes from a time (ThreatExchange, an NCMEC window
whose paging link expired) applies again the pages before it, and would never count past one.

A fetch reads at most `max_pages` pages (`[pipeline] exchange_fetch_pages`), then ends as it would at an outage,
checkpointed, but without an error (`more`): an exchange with millions of entries, or one that pages on for ever,
would otherwise hold its lease, and the process that fetches it, for as long as it goes on, and no other exchange
would be fetched there meanwhile. The schedule fetches it again as soon as the exchanges already due have had
their turn (`schedule.fetch_leased`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx

from labeler.exchanges.credentials import read_credentials
from labeler.exchanges.errors import ExchangeError, UnreadablePage
from labeler.exchanges.store import UNREADABLE, Exchange, ExchangeStore
from labeler.exchanges.types import Fetching, Page, exchange_type
from labeler.outbound import public_transport
from labeler.pipeline.banks import BankError
from labeler.pipeline.options import PipelineOptions

log = logging.getLogger(__name__)

UNREADABLE_TRIES: Final = 3  # fetches in a row that find the same page unreadable before it is skipped


@dataclass
class FetchReport:
    name: str
    pages: int = 0
    added: int = 0
    removed: int = 0
    skipped: list[str] = field(default_factory=list)  # skipped pages and entries, why
    complete: bool = False  # reached the exchange's end
    more: bool = False  # stopped at its page budget before the end: the next fetch goes on from there
    error: str | None = None  # why the fetch stopped early


def http_client(*, allow_private: bool, timeout: float = 60) -> httpx.AsyncClient:
    """The HTTP client exchanges are fetched (and sent feedback) with: public addresses only (unless allowed), no
    redirects."""
    return httpx.AsyncClient(
        transport=public_transport(allow_private=allow_private), timeout=timeout, follow_redirects=False
    )


async def fetch_exchange(
    store: ExchangeStore,
    name: str,
    *,
    keys_dir: Path,
    http: httpx.AsyncClient,
    clock: Callable[[], float] = time.time,
    max_pages: int = PipelineOptions.exchange_fetch_pages,
) -> FetchReport:
    """Fetch exchange `name` from its checkpoint to the exchange's end, or until an error stops it, or for
    `max_pages` pages."""
    report = FetchReport(name)
    exchange = await store.get(name)
    at, unreadable = exchange.resume_at or {}, exchange.unreadable  # the checkpoint saved last, and its count
    try:
        kind = exchange_type(exchange.type)
        signal_type = await store.banks.signal_type(exchange.bank)
        credentials = read_credentials(keys_dir, name)
        skip = unreadable >= UNREADABLE_TRIES
        fetching = Fetching(exchange.options, credentials, exchange.resume_at, http, clock, skip_unreadable=skip)
        async with contextlib.aclosing(kind.pages(fetching)) as pages:
            async for page in pages:
                at, unreadable = page.checkpoint, 0 if page.last else unreadable
                await _apply(store, exchange, signal_type, page, unreadable, report)
                if report.pages >= max_pages and not page.last:
                    report.more = True
                    log.info("exchange %s: %d pages fetched, the next fetch goes on", name, report.pages)
                    return report
        report.complete = True
    except UnreadablePage as exc:
        unreadable += 1
        then = "will retry" if unreadable < UNREADABLE_TRIES else "the next fetch skips it"
        if unreadable > UNREADABLE_TRIES:
            then = "could not be skipped yet; will retry"
        report.error = f"{exc}; unreadable {unreadable} fetch(es) in a row, {then}"
        log.warning("exchange %s: fetch stopped: %s", name, report.error)
        await store.save_checkpoint(name, at | {UNREADABLE: unreadable}, complete=False)
        await store.record_error(name, report.error)
    except (ExchangeError, BankError) as exc:
        log.warning("exchange %s: fetch stopped: %s", name, exc)
        report.error = str(exc)
        await store.record_error(name, str(exc))
    return report


async def _apply(
    store: ExchangeStore, exchange: Exchange, signal_type: str, page: Page, unreadable: int, report: FetchReport
) -> None:
    """Apply one page to the exchange's bank, then move the checkpoint past it (with the `unreadable` count)."""
    name = exchange.name
    if page.problem is not None:
        log.warning("exchange %s: %s", name, page.problem)
        report.skipped.append(page.problem)
        await store.record_error(name, page.problem)
    applied = await store.apply(exchange, signal_type, page.updates)
    if applied.invalid:
        why = f"entries with a malformed {signal_type} hash: {', '.join(applied.invalid[:5])}"
        log.warning("exchange %s: skipped %d %s", name, len(applied.invalid), why)
        report.skipped.append(why)
    checkpoint = page.checkpoint | ({UNREADABLE: unreadable} if unreadable else {})
    await store.save_checkpoint(name, checkpoint, complete=page.last)
    report.pages += 1
    report.added += applied.added
    report.removed += applied.removed
