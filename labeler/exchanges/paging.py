"""A fetch never pages in a circle: an exchange that hands back a paging link it gave before stops the fetch.

Each type follows its exchange's own paging: NCMEC's `paging/next` paths, StopNCII's page tokens, ThreatExchange's
`next` URLs, TAT's checkpoints. An exchange that answers a link (or token) it already gave in the same fetch, a bug
that paging APIs do have, would have us read the same pages again for ever: the fetch would never end, its lease
would be renewed all along, and no other exchange would be fetched by that process. `Followed` remembers the links
of one fetch (or of one pass where a type restarts its paging on purpose) and refuses a repeat; the checkpoint
stays at the last page applied, so the next fetch resumes there and the error says what happened.
"""

from __future__ import annotations

from labeler.exchanges.errors import ExchangeUnavailable


class Followed:
    """The paging links one fetch of exchange `who` (its name in messages) has followed."""

    def __init__(self, who: str) -> None:
        self._who = who
        self._seen: set[str] = set()

    def follow(self, link: str) -> str:
        """`link`, to be followed now; ExchangeUnavailable if this fetch followed it before."""
        if link in self._seen:
            raise ExchangeUnavailable(
                f"{self._who} gave a paging link it had given before in this fetch, which would repeat the same "
                "pages for ever; stopped at the last page applied, will resume"
            )
        self._seen.add(link)
        return link
