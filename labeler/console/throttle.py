"""Failed sign-ins, counted per key (a client address, a user name) in a sliding window: after `limit` failures
a key is refused until its oldest failure leaves the window. Success clears the key.

In each process's memory: a restart forgets, and several processes each count their own (a guesser gains a
factor of the process count, against a scrypt check per guess). At most `max_keys` keys are kept; the oldest
go first, so a flood of addresses cannot grow it.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque


class FailureLimiter:
    def __init__(self, *, limit: int, window: float, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

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
