"""What an exchange type is: the credentials and options it takes, what it carries, and how its pages are read.

Each type lives in its own module (`ncmec`, …) exposing `TYPE`, an `ExchangeType`; `fetch` drives any of them
the same way, so checkpointing, the order pages are applied in, error accounting and the schedule are written
once. Modules are imported only when a type is used: python-threatexchange (and `requests`) stay out of the
processes and commands that never touch an exchange.
"""

from __future__ import annotations

import abc
import importlib
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from labeler.exchanges.credentials import Credentials
from labeler.exchanges.errors import ExchangeError
from labeler.exchanges.store import ExchangeUpdate

_MODULES: Final = {
    "ncmec": "labeler.exchanges.ncmec",
    "stopncii": "labeler.exchanges.stopncii",
    "tat": "labeler.exchanges.tat",
    "threatexchange": "labeler.exchanges.threatexchange",
}
TYPE_NAMES: Final = tuple(_MODULES)


@dataclass(frozen=True)
class CredentialField:
    """One value of an exchange's credentials: its key in the credentials file, which is also the `labeler exchange
    add` option giving it (`fetch_key` is `--fetch-key`), and whether it is secret (prompted for without echo when
    not given, never printed). A value only feedback needs (`for_feedback`, StopNCII's SubmitFeedback key) is
    required once feedback is switched on, so an exchange never has feedback on that could not be sent."""

    key: str
    secret: bool = True
    required: bool = True
    for_feedback: bool = False

    @property
    def option(self) -> str:
        return "--" + self.key.replace("_", "-")


@dataclass(frozen=True)
class Page:
    """One page of an exchange, and where the fetch resumes once it is applied."""

    updates: list[ExchangeUpdate]
    checkpoint: dict[str, Any]
    last: bool  # the exchange has nothing after this page (for now)
    problem: str | None = None  # why (part of) the page was skipped


@dataclass(frozen=True)
class Fetching:
    """What one fetch of one exchange works with."""

    options: Mapping[str, Any]  # as `ExchangeType.options` made them
    credentials: Credentials
    checkpoint: dict[str, Any] | None  # where the last applied page left off
    http: httpx.AsyncClient  # public addresses only (unless allowed), bounded
    clock: Callable[[], float] = time.time
    skip_unreadable: bool = False  # fetch after fetch stopped at an unreadable page: skip what cannot be read


@dataclass(frozen=True)
class FeedbackCall:
    """A moderator's verdict on a match against one exchange entry, to be sent back to the exchange: whether its
    hash was really what the exchange says (confirmed) or a false positive (rejected)."""

    options: Mapping[str, Any]  # the exchange's, as `ExchangeType.options` made them
    credentials: Credentials
    http: httpx.AsyncClient  # public addresses only (unless allowed), bounded
    remote_id: str  # the entry's id at the exchange (its bank entry's external_id)
    signal_type: str  # ours (`pdq`, `md5`, …) of the hash that matched
    value: str  # the hash that matched, as the bank holds it
    confirmed: bool  # True: the moderator confirmed the match; False: rejected it
    note: str | None = None  # the moderator's note, if any


class ExchangeType(abc.ABC):
    name: str
    signal_types: tuple[str, ...]  # what it carries that a bank can hold
    credentials: tuple[CredentialField, ...]
    option_keys: tuple[str, ...] = ("url",)  # the `exchange add` options, besides credentials, it takes
    has_feedback: bool = False  # whether `send_feedback` is implemented (the exchange takes verdicts back)

    @abc.abstractmethod
    def options(self, given: Mapping[str, str | None]) -> dict[str, Any]:
        """The options to store for a new exchange of this type, from `labeler exchange add`'s option values
        (`url`, `environment`, `privacy_group`, None when not given); raise ExchangeError naming what is wrong."""

    @abc.abstractmethod
    def pages(self, fetch: Fetching) -> AsyncGenerator[Page]:
        """The pages still to read after `fetch.checkpoint` (None: from the start). Auth failures raise
        ExchangeAuthError and outages ExchangeUnavailable; the caller's checkpoint stays at the last applied
        page, so the next fetch resumes there. A page that cannot be read raises UnreadablePage, unless
        `fetch.skip_unreadable`: then what cannot be read is skipped, losing as little as the exchange's paging
        allows, and the page after it carries a `problem` saying what was skipped (UnreadablePage still where
        nothing can skip it)."""

    async def send_feedback(self, call: FeedbackCall) -> None:
        """Tell the exchange the moderator's verdict on one of its entries (types with `has_feedback`). Raise
        ExchangeUnavailable when sending again later may work (outage, 429, 5xx: the caller retries with backoff),
        ExchangeAuthError when the credentials are refused, ExchangeError when the exchange refused this call for
        good (the caller records it and does not retry); returning means the exchange took it."""
        raise ExchangeError(f"exchanges of type {self.name} take no feedback")


def exchange_type(name: str) -> ExchangeType:
    if name not in _MODULES:
        raise ExchangeError(f"unknown exchange type {name!r}; implemented: {', '.join(TYPE_NAMES)}")
    kind: ExchangeType = importlib.import_module(_MODULES[name]).TYPE
    return kind
