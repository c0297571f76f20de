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
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from labeler.exchanges.credentials import Credentials
from labeler.exchanges.errors import ExchangeError
from labeler.exchanges.store import ExchangeUpdate

_MODULES: Final = {"ncmec": "labeler.exchanges.ncmec"}
PLANNED: Final = ("stopncii", "tat", "threatexchange")  # named on the command line, refused until built
TYPE_NAMES: Final = tuple(_MODULES)


@dataclass(frozen=True)
class CredentialField:
    """One value of an exchange's credentials: its key in the credentials file, which is also the `labeler exchange
    add` option giving it (`fetch_key` is `--fetch-key`), and whether it is secret (prompted for without echo when
    not given, never printed)."""

    key: str
    secret: bool = True
    required: bool = True

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


class ExchangeType(abc.ABC):
    name: str
    signal_types: tuple[str, ...]  # what it carries that a bank can hold
    credentials: tuple[CredentialField, ...]

    @abc.abstractmethod
    def options(self, given: Mapping[str, str | None]) -> dict[str, Any]:
        """The options to store for a new exchange of this type, from `labeler exchange add`'s option values
        (`url`, `environment`, `privacy_group`, None when not given); raise ExchangeError naming what is wrong."""

    @abc.abstractmethod
    def pages(self, fetch: Fetching) -> AsyncIterator[Page]:
        """The pages still to read after `fetch.checkpoint` (None: from the start). Auth failures raise
        ExchangeAuthError and outages ExchangeUnavailable; the caller's checkpoint stays at the last applied
        page, so the next fetch resumes there. A page that cannot be read is yielded empty with its `problem`
        and a checkpoint past it where the exchange's paging allows; otherwise raise ExchangeError."""


def exchange_type(name: str) -> ExchangeType:
    if name not in _MODULES:
        planned = " (not implemented yet)" if name in PLANNED else ""
        raise ExchangeError(f"unknown exchange type {name!r}{planned}; implemented: {', '.join(TYPE_NAMES)}")
    kind: ExchangeType = importlib.import_module(_MODULES[name]).TYPE
    return kind
