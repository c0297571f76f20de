"""One fetch of one exchange: pages from its client, each applied to the bank and then checkpointed.

A fetch stops at an auth failure or an outage with the checkpoint at the last applied page, records the error on
the exchange (`labeler exchange list`, `/metrics`), and the next fetch resumes there. A skipped page counts as an
error too, but the fetch goes on past it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from labeler.exchanges.credentials import read_credentials
from labeler.exchanges.errors import ExchangeError
from labeler.exchanges.store import ExchangeStore
from labeler.exchanges.types import Fetching, exchange_type
from labeler.outbound import public_transport
from labeler.pipeline.banks import BankError

log = logging.getLogger(__name__)


@dataclass
class FetchReport:
    name: str
    pages: int = 0
    added: int = 0
    removed: int = 0
    skipped: list[str] = field(default_factory=list)  # skipped pages and entries, why
    complete: bool = False  # reached the exchange's end
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
) -> FetchReport:
    """Fetch exchange `name` from its checkpoint to the exchange's end (or until an error stops it)."""
    report = FetchReport(name)
    exchange = await store.get(name)
    try:
        kind = exchange_type(exchange.type)
        signal_type = await store.banks.signal_type(exchange.bank)
        fetching = Fetching(exchange.options, read_credentials(keys_dir, name), exchange.checkpoint, http, clock)
        async for page in kind.pages(fetching):
            if page.problem is not None:
                log.warning("exchange %s: %s", name, page.problem)
                report.skipped.append(page.problem)
                await store.record_error(name, page.problem)
            applied = await store.apply(exchange, signal_type, page.updates)
            if applied.invalid:
                why = f"entries with a malformed {signal_type} hash: {', '.join(applied.invalid[:5])}"
                log.warning("exchange %s: skipped %d %s", name, len(applied.invalid), why)
                report.skipped.append(why)
            await store.save_checkpoint(name, page.checkpoint, complete=page.last)
            report.pages += 1
            report.added += applied.added
            report.removed += applied.removed
        report.complete = True
    except (ExchangeError, BankError) as exc:
        log.warning("exchange %s: fetch stopped: %s", name, exc)
        report.error = str(exc)
        await store.record_error(name, str(exc))
    return report
