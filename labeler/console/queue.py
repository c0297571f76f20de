"""The review queue as the console shows it: pending items in priority order, each with its evidence laid out.

Priority: items queued by a rule with a higher `priority` (a policy option, default 0) first; then the closest
match (distance 0 for exact signals), then by bank name, then oldest first. The queue table is read in id order,
so up to `SCAN` pending items are read and sorted here; a longer queue shows its oldest `SCAN` (the page says so).

Each card also lists the account's other matches, pending or decided, the newest `OTHERS` (one indexed read per
account shown), so a reviewer sees at once an account matched before and what was decided then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from labeler.pipeline.review import ReviewItem, ReviewQueue

SCAN: Final = 2000
SHOWN: Final = 50
OTHERS: Final = 10
_PAGE: Final = 500


@dataclass(frozen=True)
class Card:
    """One pending item, with the fields the page shows (strings; "" where the evidence has none)."""

    item: ReviewItem
    bank: str
    entry_id: str
    external_id: str
    distance: str
    signal: str
    rule: str
    hash: str
    quality: str
    author: str
    media: str
    web_url: str
    others: list[ReviewItem]  # the account's other items, any status, newest first (at most OTHERS)

    @property
    def has_image(self) -> bool:
        return self.media == "image" and bool(self.item.evidence.get("image", {}).get("blob_cid"))


def priority(item: ReviewItem) -> tuple[float, float, str, str, int]:
    match = _dict(item.evidence.get("match"))
    rank = _number(_dict(item.evidence.get("rule")).get("priority"), 0.0)
    closeness = _number(match.get("distance"), 1e9)
    return -rank, closeness, str(match.get("bank", "")), item.created_at, item.id


def _number(value: Any, default: float) -> float:
    """A number from evidence (JSON, so anything): `default` for what is not one."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


async def pending(reviews: ReviewQueue) -> tuple[list[Card], int]:
    """The first SHOWN cards by priority, and how many pending items were read (at most SCAN)."""
    items: list[ReviewItem] = []
    after = 0
    while len(items) < SCAN:
        page = await reviews.list(status="pending", after=after, limit=_PAGE)
        items += page
        if len(page) < _PAGE:
            break
        after = page[-1].id
    ordered = sorted(items, key=priority)[:SHOWN]
    shown_by_author: dict[str, int] = {}
    for item in ordered:
        author = _author(item)
        shown_by_author[author] = shown_by_author.get(author, 0) + 1
    by_author = {  # enough for each card to leave out itself
        author: await reviews.of_account(author, limit=OTHERS + shown) for author, shown in shown_by_author.items()
    }
    return [card(item, by_author) for item in ordered], len(items)


def card(item: ReviewItem, by_author: dict[str, list[ReviewItem]]) -> Card:
    evidence = item.evidence
    match, rule = _dict(evidence.get("match")), _dict(evidence.get("rule"))
    signal = str(evidence.get("signal_type") or match.get("signal_type") or "")
    author = _author(item)
    return Card(
        item=item,
        bank=_text(match.get("bank")),
        entry_id=_text(match.get("entry_id")),
        external_id=_text(match.get("external_id")),
        distance=_text(match.get("distance")),
        signal=signal,
        rule=_text(rule.get("name")),
        hash=_text(evidence.get(signal) if signal in ("pdq", "md5", "sha256") else evidence.get("pdq")),
        quality=_text(evidence.get("quality")),
        author=author,
        media=_text(_dict(evidence.get("image")).get("media") or "image"),
        web_url=_web_url(item.subject_uri),
        others=[i for i in by_author.get(author, []) if i.id != item.id][:OTHERS] if author else [],
    )


def _author(item: ReviewItem) -> str:
    did = _dict(item.evidence.get("image")).get("did")
    if isinstance(did, str):
        return did
    return item.subject_uri.removeprefix("at://").split("/", 1)[0]


def _web_url(uri: str) -> str:
    """The post on bsky.app, for a post URI; "" for anything else."""
    parts = uri.removeprefix("at://").split("/")
    if uri.startswith("at://") and len(parts) == 3 and parts[1] == "app.bsky.feed.post":
        return f"https://bsky.app/profile/{parts[0]}/post/{parts[2]}"
    return ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return "" if value is None else str(value)
