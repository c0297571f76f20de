"""Failed sign-ins and password attempts, counted per key (a client, a user name) in a sliding window: after
`limit` failures a key is refused until its oldest failure leaves the window. Success clears the key.

One limiter for every secret a client can guess: the admin password and the upload tokens over the API (per
client: an IPv4 address or an IPv6 /64, `labeler.xrpc.clients`; `LABELER_MAX_LOGIN_FAILURES` per
`LABELER_LOGIN_FAILURE_WINDOW`, `app.state.failed_logins`), and the console's sign-in (per client, keyed the
same way, and per name, `labeler.console.auth`). A refused attempt is refused before the secret is compared, the
right one included.

In each process's memory: a restart forgets, and several processes each count their own (a guesser gains a
factor of the process count). At most `max_keys` keys are kept; the oldest go first, so a flood of addresses
cannot grow it.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque

from starlette.requests import HTTPConnection

from labeler.config import Settings
from labeler.protocol.errors import RateLimitExceeded
from labeler.xrpc.clients import client_key


class FailureLimiter:
    def __init__(self, *, limit: int, window: float, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    @classmethod
    def for_clients(cls, settings: Settings) -> FailureLimiter:
        """The per-client limiter of the API's secrets, from the settings."""
        return cls(limit=settings.max_login_failures, window=settings.login_failure_window, max_keys=50_000)

    def retry_after(self, key: str, *, now: float | None = None) -> float:
        """Seconds until `key` may try again; 0 when it may now."""
        now = time.monotonic() if now is None else now
        times = self._failures.get(key)
        if times is None:
            return 0.0
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0.0
        return times[0] + self.window - now if len(times) >= self.limit else 0.0

    def failed(self, key: str, *, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        times = self._failures.pop(key, None) or deque(maxlen=self.limit)
        times.append(now)
        self._failures[key] = times  # most recent last
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)

    def check_client(self, connection: HTTPConnection) -> str:
        """The client's key; RateLimitExceeded (with whole seconds to wait) if it has no attempt left."""
        key = client_key(connection)
        wait = self.retry_after(key)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise RateLimitExceeded(f"too many failed attempts; try again in {seconds} s", retry_after=seconds)
        return key
