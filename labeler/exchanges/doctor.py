"""What `labeler doctor` checks about hash exchanges: each one has reached the exchange's end recently, and is not
stopping at an unreadable page.

Read from the database, so it works from any machine that reaches it. An exchange is stale when its last complete
fetch is older than twice `[pipeline] exchange_fetch_seconds` (one missed round is tolerated: a first fetch of a
large exchange takes a while); the finding carries the last error, which usually says why (credentials, outage).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from labeler.config import Settings
from labeler.exchanges.fetch import UNREADABLE_TRIES
from labeler.exchanges.store import Exchange, ExchangeStore
from labeler.identity.doctor import Finding
from labeler.pipeline.banks import BankStore
from labeler.pipeline.options import load_options
from labeler.store.engine import StoreError, opened_engine

_FIX = (
    "check that worker processes run (`labeler serve` with workers, or `labeler worker`) and the exchange's last "
    "error; `labeler exchange fetch {name}` fetches it now and prints why it stops"
)

_UNREADABLE_FIX = (
    f"a glitch passes by itself; a page that stays unreadable is skipped from the {UNREADABLE_TRIES + 1}th fetch on, "
    "and the error says when it cannot be skipped yet"
)


async def exchange_findings(settings: Settings, clock: Callable[[], float] = time.time) -> list[Finding]:
    interval = load_options(settings).exchange_fetch_seconds
    try:
        async with opened_engine(settings.database_url) as engine:
            exchanges = await ExchangeStore(engine, BankStore(engine)).all()
    except StoreError as exc:
        return [Finding("exchanges", "warn", f"cannot read the exchanges: {exc}")]
    return [_finding(e, interval, clock()) for e in exchanges]


def _finding(exchange: Exchange, interval: float, now: float) -> Finding:
    name = f"{exchange.name} ({exchange.type} → {exchange.bank})"
    error = f"; last error: {exchange.last_error}" if exchange.last_error else ""
    since = exchange.last_success_at or exchange.created_at
    age = now - datetime.fromisoformat(since).timestamp()
    done = f"last complete fetch {exchange.last_success_at}" if exchange.last_success_at else "never fetched fully"
    if exchange.unreadable:
        message = f"{name}: {exchange.unreadable} fetch(es) in a row stopped at an unreadable page{error}"
        return Finding("exchanges", "warn", message, _UNREADABLE_FIX)
    if interval == 0:
        return Finding("exchanges", "ok", f"{name}: fetched on demand only; {done}{error}")
    if age > 2 * interval:
        message = f"{name}: {done}, more than twice exchange_fetch_seconds ({interval:g} s) ago{error}"
        return Finding("exchanges", "warn", message, _FIX.format(name=exchange.name))
    return Finding("exchanges", "ok", f"{name}: {done}, {exchange.entries} entries{error}")
