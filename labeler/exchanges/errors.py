"""What can stop a fetch. Messages never hold credentials: they name the exchange, the status and what to do."""

from __future__ import annotations


class ExchangeError(Exception):
    """An exchange operation cannot be done as asked, or a fetch stopped; the message says why."""


class ExchangeAuthError(ExchangeError):
    """The exchange refused our credentials (nothing was fetched)."""


class ExchangeUnavailable(ExchangeError):
    """The exchange did not answer usefully (outage, overload); the next fetch resumes from the checkpoint."""


class UnreadablePage(ExchangeError):
    """A page that cannot be read, at a place the fetch cannot go past now: it stops with the checkpoint before the
    page. `fetch` counts the fetches in a row that stop so, and from `fetch.UNREADABLE_TRIES` on asks the type to
    skip the page (`Fetching.skip_unreadable`): a glitch is read again first, a page that stays broken does not
    stall the exchange for ever (HMA issue #2004)."""


class MalformedPage(ValueError):
    """An exchange's answer that is not a readable page of its format. Not an ExchangeError: the type decides
    whether its paging lets it skip the page (with a `problem`) or the fetch must stop there (UnreadablePage)."""
