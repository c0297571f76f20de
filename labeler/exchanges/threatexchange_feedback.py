"""ThreatExchange feedback: a reaction on the descriptors of the indicator that matched, as pytx's client sends it.

Reactions act on descriptors (each member app's copy of an indicator), not on the indicator, so the indicator's
descriptors are read first: GET `/<indicator id>?fields=descriptors{id,owner{id}}` (pytx's
`get_threat_descriptors_from_indicator`, asking for the owner too), then the edge's further pages, which pytx's call
does not read, so nothing beyond the indicator's id needs keeping from the fetch. Then, for every descriptor another
app owns, POST `/<descriptor id>/?reactions=…` (pytx's `react_to_threat_descriptor`): a confirmed match is `HELPFUL`
(pytx's `react_upvote_threat_descriptor`), a rejected one `DISAGREE_WITH_TAGS`, the reaction pytx's
`FBThreatExchangeIndicatorRecord` reads as a member's negative opinion (and `ThreatDescriptor` as a false positive).
Reactions are a set per app, so the opposite one is removed in the same call (`reactions_to_remove`): a reversed
verdict replaces the earlier one, and sending one twice changes nothing. ThreatExchange takes no free text with a
reaction: the moderator's note stays here.
"""

from __future__ import annotations

from typing import Any, Final

from labeler.exchanges.errors import ExchangeError, ExchangeUnavailable
from labeler.exchanges.threatexchange import GraphClient
from labeler.exchanges.types import FeedbackCall

CONFIRMED: Final = "HELPFUL"
REJECTED: Final = "DISAGREE_WITH_TAGS"
_DESCRIPTOR_FIELDS: Final = "descriptors{id,owner{id}}"
MAX_DESCRIPTOR_PAGES: Final = 20  # 500 descriptors at Graph's 25 a page: far more members than a privacy group has


async def send_reactions(client: GraphClient, call: FeedbackCall) -> int:
    """React to the other members' descriptors of `call`'s indicator; returns how many were reacted to."""
    if not call.remote_id.isascii() or not call.remote_id.isdigit():
        raise ExchangeError(f"{call.remote_id!r} is not a ThreatExchange indicator id; fetch the exchange again")
    theirs = [d for d, owner in await descriptors(client, call.remote_id) if owner != client.app_id]
    if not theirs:
        raise ExchangeError(f"indicator {call.remote_id} has no descriptor of another member to react to")
    given, withdrawn = (CONFIRMED, REJECTED) if call.confirmed else (REJECTED, CONFIRMED)
    for descriptor in theirs:
        answer = await client.request(
            "POST", client.url(f"{descriptor}/"), {"reactions": given, "reactions_to_remove": withdrawn}
        )
        if not (isinstance(answer, dict) and answer.get("success") is True):
            raise ExchangeUnavailable(f"ThreatExchange did not confirm the reaction to descriptor {descriptor}")
    return len(theirs)


async def descriptors(client: GraphClient, indicator: str) -> list[tuple[str, int]]:
    """The descriptors of `indicator` we may see: (descriptor id, owner app id). Graph lists an edge a page at a
    time (25 unless asked), so its `next` links are followed (`GraphClient.next_page`), up to
    `MAX_DESCRIPTOR_PAGES`: an indicator listing more is refused whole rather than reacted to in part."""
    answer = await client.request("GET", client.url(indicator), {"fields": _DESCRIPTOR_FIELDS})
    if isinstance(answer, dict) and "descriptors" not in answer:
        return []  # Graph leaves out an edge with nothing in it
    edge: Any = answer.get("descriptors") if isinstance(answer, dict) else None
    path = client.url(f"{indicator}/descriptors")
    found: list[tuple[str, int]] = []
    for _ in range(MAX_DESCRIPTOR_PAGES):
        try:
            found += [(str(int(d["id"])), int(d["owner"]["id"])) for d in edge["data"]]
        except (KeyError, TypeError, ValueError):
            raise ExchangeUnavailable(f"ThreatExchange's descriptors of indicator {indicator} are unreadable") from None
        following = client.next_page(edge, path)
        if following is None:
            return found
        edge = await client.request("GET", path, following)
    raise ExchangeError(
        f"indicator {indicator} lists more than {MAX_DESCRIPTOR_PAGES} pages of descriptors; reacted to none"
    )
