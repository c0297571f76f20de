"""What can stop a fetch. Messages never hold credentials: they name the exchange, the status and what to do."""

from __future__ import annotations


class ExchangeError(Exception):
    """An exchange operation cannot be done as asked, or a fetch stopped; the message says why."""


class ExchangeAuthError(ExchangeError):
    """The exchange refused our credentials (nothing was fetched)."""


class ExchangeUnavailable(ExchangeError):
    """The exchange did not answer usefully (outage, overload); the next fetch resumes from the checkpoint."""


class MalformedPage(ValueError):
    """An exchange's answer that is not a readable page of its format. Not an ExchangeError: the type decides
    whether its paging lets it skip the page (with a `problem`) or the fetch must stop there."""
