"""Admission of subscribeLabels connections: a cap on all of them and a cap per client network.

`take` checks and counts in one step, with no await in between, so handshakes arriving together cannot all pass
one check before any of them is counted (issue: the check used to come before a database round trip, and the
count after it). The caller names the client by a key of its choosing (`labeler.xrpc.clients.client_key`: an
IPv4 address or an IPv6 /64); this module knows nothing of addresses.

A refusal is overload, not a failure: 503 when every slot is taken, 429 when the client holds its share, both
with a Retry-After (a slot frees when a subscriber leaves, which cannot be foreseen, so it is a fixed guess).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from labeler.protocol.errors import RateLimitExceeded, ServiceUnavailable

RETRY_AFTER_S: Final = 5


class SubscriberSlots:
    def __init__(self, total: int, per_client: int) -> None:
        if total < 1 or per_client < 1:
            raise ValueError("subscriber caps must be positive")
        self.total = total
        self.per_client = per_client
        self._held: Counter[str] = Counter()
        self._in_use = 0

    @property
    def in_use(self) -> int:
        """Open connections counted, including those still backfilling (not yet registered with the hub)."""
        return self._in_use

    def held_by(self, client: str) -> int:
        return self._held[client]

    @contextmanager
    def hold(self, client: str) -> Iterator[None]:
        """A slot for `client` for the duration of the block; at once ServiceUnavailable if every slot is taken,
        RateLimitExceeded if the client holds its share (both `RetryLater`)."""
        self._take(client)
        try:
            yield
        finally:
            self._give_back(client)

    def _take(self, client: str) -> None:
        if self._in_use >= self.total:
            raise ServiceUnavailable("too many subscribers", retry_after=RETRY_AFTER_S)
        if self._held[client] >= self.per_client:
            raise RateLimitExceeded(
                f"too many subscriptions from one client (at most {self.per_client})", retry_after=RETRY_AFTER_S
            )
        self._held[client] += 1
        self._in_use += 1

    def _give_back(self, client: str) -> None:
        self._in_use -= 1
        self._held[client] -= 1
        if self._held[client] <= 0:
            del self._held[client]
