"""Admission of subscribeLabels connections: a cap on all of them and a cap per client network.

`take` checks and counts in one step, with no await in between, so handshakes arriving together cannot all pass
one check before any of them is counted (issue: the check used to come before a database round trip, and the
count after it). The caller names the client by a key of its choosing (`labeler.xrpc.clients.client_key`: an
IPv4 address or an IPv6 /64); this module knows nothing of addresses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from labeler.protocol.errors import XrpcError


class SlotRefused(XrpcError):
    """No slot for this connection: the message says which cap it hit (sent as the stream's error frame)."""


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
        """A slot for `client` for the duration of the block; `SlotRefused` at once if either cap is reached."""
        self._take(client)
        try:
            yield
        finally:
            self._give_back(client)

    def _take(self, client: str) -> None:
        if self._in_use >= self.total:
            raise SlotRefused("too many subscribers")
        if self._held[client] >= self.per_client:
            raise SlotRefused(f"too many subscriptions from one client (at most {self.per_client})")
        self._held[client] += 1
        self._in_use += 1

    def _give_back(self, client: str) -> None:
        self._in_use -= 1
        self._held[client] -= 1
        if self._held[client] <= 0:
            del self._held[client]
