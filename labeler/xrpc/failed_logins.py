"""Failed sign-ins and password attempts, counted per key (a client, a user name) in a fixed window that starts at
the key's first failure: after `limit` failures the key is refused until the window ends. Success clears the key.

One limiter for every secret a client can guess, each counted under its own `Allowance`: the admin password and
the upload tokens over the API (per client: an IPv4 address or an IPv6 /64, `labeler.xrpc.clients`;
`LABELER_MAX_LOGIN_FAILURES` per `LABELER_LOGIN_FAILURE_WINDOW`, `app.state.failed_logins`), and the console's
sign-in (per client, keyed the same way, and per name, `labeler.console.auth`). A refused attempt is refused before
the secret is compared, the right one included.

The counts are in the database (`labeler.store.login_failures`), so every serving process sees the same ones and a
restart forgets none; a failed attempt costs one upsert, and a check one primary-key read (a success after failures
one delete more). Each process also counts in its own memory (at most `max_keys` keys, the least recent forgotten),
and a key is refused if either count says so: when the database fails or does not answer within `timeout`
seconds, the process still refuses by what it saw itself rather than letting guesses through or failing the
request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import HTTPConnection

from labeler.protocol.errors import RateLimitExceeded
from labeler.service import Labeler
from labeler.store.errors import StoreError
from labeler.store.login_failures import Count, Key, LoginFailures
from labeler.xrpc.clients import client_key

#: Seconds a check or a failure waits for the database before counting in memory only.
DB_TIMEOUT: Final = 2.0
#: Seconds between two warnings that the database is failing (a guesser would otherwise fill the log).
WARN_INTERVAL: Final = 60.0

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Allowance:
    """How many failures a key of `scope` may have in a window of `window` seconds."""

    scope: str
    limit: int
    window: float


@dataclass(frozen=True)
class Attempt:
    """A checked attempt: how long it must wait (0: it may go on), and where to record its outcome."""

    limiter: FailureLimiter
    keys: tuple[tuple[Allowance, str], ...]
    wait: float
    on_record: bool  # some key has failures counted: a success must clear them

    @property
    def retry_after(self) -> int:
        """Whole seconds for `Retry-After`."""
        return max(1, math.ceil(self.wait))

    async def failed(self) -> None:
        await self.limiter.failed(self.keys)

    async def succeeded(self) -> None:
        if self.on_record:
            await self.limiter.succeeded(self.keys)


class FailureLimiter:
    def __init__(
        self,
        store: LoginFailures,
        *,
        clients: Allowance,
        clock: Callable[[], float] = time.time,
        max_keys: int = 50_000,
        timeout: float = DB_TIMEOUT,
    ) -> None:
        self.store = store
        self.clients = clients  # the API's per-client allowance
        self.clock = clock  # Unix seconds, shared by every process through the database
        self.timeout = timeout
        self._memory = _MemoryCounts(max_keys)
        self._quiet_until = 0.0

    @classmethod
    def for_service(cls, labeler: Labeler) -> FailureLimiter:
        """The service's limiter, with the API's per-client allowance from the settings."""
        settings = labeler.settings
        clients = Allowance("api", settings.max_login_failures, settings.login_failure_window)
        return cls(LoginFailures(labeler.engine), clients=clients)

    async def check(self, keys: Sequence[tuple[Allowance, str]]) -> Attempt:
        """The attempt's wait: the longest any of its keys must wait (the database's count or this process's)."""
        now = self.clock()
        ids = [(allowance.scope, key) for allowance, key in keys]
        shared = await self._shared("reading", self.store.counts(ids, now)) or {}
        wait, on_record = 0.0, False
        for (allowance, _), key in zip(keys, ids, strict=True):
            for count in (shared.get(key), self._memory.get(key, now)):
                if count is not None:
                    on_record = True
                    if count.failures >= allowance.limit:
                        wait = max(wait, count.expires_at - now)
        return Attempt(self, tuple(keys), wait, on_record)

    async def check_client(self, connection: HTTPConnection) -> Attempt:
        """The API client's attempt; RateLimitExceeded (with whole seconds to wait) if it has no attempt left."""
        attempt = await self.check([(self.clients, client_key(connection))])
        if attempt.wait > 0:
            seconds = attempt.retry_after
            raise RateLimitExceeded(f"too many failed attempts; try again in {seconds} s", retry_after=seconds)
        return attempt

    async def failed(self, keys: Sequence[tuple[Allowance, str]]) -> None:
        now = self.clock()
        windows = [((allowance.scope, key), allowance.window) for allowance, key in keys]
        for key, window in windows:
            self._memory.add(key, window, now)
        await self._shared("recording", self.store.add(windows, now))

    async def succeeded(self, keys: Sequence[tuple[Allowance, str]]) -> None:
        ids = [(allowance.scope, key) for allowance, key in keys]
        for key in ids:
            self._memory.clear(key)
        await self._shared("clearing", self.store.clear(ids))

    async def _shared(self, what: str, operation: Awaitable[T]) -> T | None:
        """The database's answer, or None (logged at most every WARN_INTERVAL) when it failed or was too slow."""
        try:
            return await asyncio.wait_for(operation, self.timeout)
        except (StoreError, SQLAlchemyError, OSError, TimeoutError) as exc:
            now = time.monotonic()
            if now >= self._quiet_until:
                self._quiet_until = now + WARN_INTERVAL
                log.warning(
                    "%s sign-in failures in the database failed (%s): counting in this process only",
                    what,
                    type(exc).__name__,
                )
            return None


class _MemoryCounts:
    """This process's own counts, the same fixed windows as the database's, at most `max_keys` of them."""

    def __init__(self, max_keys: int) -> None:
        self.max_keys = max_keys
        self._counts: OrderedDict[Key, Count] = OrderedDict()

    def get(self, key: Key, now: float) -> Count | None:
        count = self._counts.get(key)
        if count is not None and count.expires_at <= now:
            del self._counts[key]
            return None
        return count

    def add(self, key: Key, window: float, now: float) -> None:
        count = self.get(key, now)
        self._counts.pop(key, None)
        self._counts[key] = Count(1, now + window) if count is None else Count(count.failures + 1, count.expires_at)
        while len(self._counts) > self.max_keys:
            self._counts.popitem(last=False)  # the least recently failed

    def clear(self, key: Key) -> None:
        self._counts.pop(key, None)
