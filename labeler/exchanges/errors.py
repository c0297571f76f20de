"""What can stop a fetch. Messages never hold credentials: they name the exchange, the status and what to do."""

from __future__ import annotations


class ExchangeError(Exception):
    """An exchange operation cannot be done as asked, or a fetch stopped; the message says why."""


class ExchangeAuthError(ExchangeError):
    """The exchange refused our credentials (nothing was fetched)."""


class ExchangeUnavailable(ExchangeError):
    """The exchange did not answer usefully (outage, overload); the next fetch resumes from the checkpoint."""
