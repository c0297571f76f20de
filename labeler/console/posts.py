"""The posts behind review items, for the reviewer's context: each post's text read from its author's PDS
(`com.atproto.repo.getRecord` through the pipeline's fetcher: its limits and public-address rule), all at once
and within a few seconds, so a slow PDS costs the page that long and no more. Nothing is kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from labeler.pipeline.fetcher import BlobFetcher, FetchError

POST: Final = "app.bsky.feed.post"
WITHIN: Final = 3.0
MAX_TEXT: Final = 3000
_AT_ONCE: Final = 8


@dataclass(frozen=True)
class Post:
    """A post's text as its PDS serves it now, or why it cannot be shown (`problem`)."""

    text: str = ""
    created_at: str = ""
    problem: str = ""
    changed: bool = False  # the PDS serves another version than the one the match was on


async def posts(fetcher: BlobFetcher, subjects: Iterable[tuple[str, str | None]]) -> dict[str, Post]:
    """URI → Post for the post subjects among (uri, cid); others are left out."""
    wanted = {uri: cid for uri, cid in subjects if _post_parts(uri) is not None}
    gate = asyncio.Semaphore(_AT_ONCE)

    async def one(uri: str) -> Post:
        did, rkey = _post_parts(uri) or ("", "")
        async with gate:
            try:
                cid, value = await fetcher.get_record(did, POST, rkey)
            except FetchError as exc:
                return Post(problem=exc.reason)
        if not isinstance(value, dict):
            return Post(problem="not a post")
        text, created = value.get("text"), value.get("createdAt")
        return Post(
            text=text[:MAX_TEXT] if isinstance(text, str) else "",
            created_at=created if isinstance(created, str) else "",
            changed=wanted[uri] is not None and cid != wanted[uri],
        )

    tasks = {uri: asyncio.ensure_future(one(uri)) for uri in wanted}
    if tasks:
        await asyncio.wait(tasks.values(), timeout=WITHIN)
    found = {}
    for uri, task in tasks.items():
        if task.done():
            found[uri] = task.result()
        else:
            task.cancel()
            found[uri] = Post(problem="timeout")
    return found


def _post_parts(uri: str) -> tuple[str, str] | None:
    parts = uri.removeprefix("at://").split("/")
    if uri.startswith("at://") and len(parts) == 3 and parts[1] == POST and parts[0].startswith("did:"):
        return parts[0], parts[2]
    return None
