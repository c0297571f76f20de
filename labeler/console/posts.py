"""The posts behind review items, for the reviewer's context: each post's text and the links in it, read from its
author's PDS (`com.atproto.repo.getRecord` through the pipeline's fetcher: its limits and public-address rule),
all at once within a few seconds (`labeler.console.network`). Nothing is kept.

Links come from the record's facets (`app.bsky.richtext.facet#link`), as the post's own app shows them. The page
shows them as text and, for http(s) ones, as links that send no referrer and are never followed by the labeler
or fetched by the page: a person may open one, nothing else does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from labeler.console.network import gather_within
from labeler.pipeline.fetcher import BlobFetcher, FetchError

POST: Final = "app.bsky.feed.post"
LINK: Final = "app.bsky.richtext.facet#link"
MAX_TEXT: Final = 3000
MAX_LINKS: Final = 20
MAX_URI: Final = 2000


@dataclass(frozen=True)
class Link:
    """A link in a post: the text it is on, its target, and whether the page may make it clickable (http(s))."""

    text: str
    uri: str

    @property
    def web(self) -> bool:
        return self.uri.startswith(("https://", "http://"))


@dataclass(frozen=True)
class Post:
    """A post's text as its PDS serves it now, or why it cannot be shown (`problem`)."""

    text: str = ""
    created_at: str = ""
    problem: str = ""
    changed: bool = False  # the PDS serves another version than the one the match was on
    links: list[Link] = field(default_factory=list)


async def posts(fetcher: BlobFetcher, subjects: Iterable[tuple[str, str | None]]) -> dict[str, Post]:
    """URI → Post for the post subjects among (uri, cid); others are left out."""
    wanted = {uri: cid for uri, cid in subjects if _post_parts(uri) is not None}

    async def one(uri: str) -> Post:
        did, rkey = _post_parts(uri) or ("", "")
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
            links=links(text if isinstance(text, str) else "", value.get("facets")),
        )

    return await gather_within(wanted, one, late=Post(problem="timeout"))


def links(text: str, facets: Any) -> list[Link]:
    """The link features of a post's facets, at most MAX_LINKS, each with the text its byte range covers; a
    malformed facet is skipped, as an app skips it."""
    found: list[Link] = []
    encoded = text.encode()
    for facet in facets if isinstance(facets, list) else []:
        index = facet.get("index") if isinstance(facet, dict) else None
        features = facet.get("features") if isinstance(facet, dict) else None
        if not isinstance(index, dict) or not isinstance(features, list):
            continue
        start, end = index.get("byteStart"), index.get("byteEnd")
        valid = isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(encoded)
        covered = encoded[start:end].decode(errors="replace") if valid else ""
        for feature in features:
            uri = feature.get("uri") if isinstance(feature, dict) and feature.get("$type") == LINK else None
            if isinstance(uri, str) and 0 < len(uri) <= MAX_URI and len(found) < MAX_LINKS:
                found.append(Link(covered[:MAX_URI], uri))
    return found


def _post_parts(uri: str) -> tuple[str, str] | None:
    parts = uri.removeprefix("at://").split("/")
    if uri.startswith("at://") and len(parts) == 3 and parts[1] == POST and parts[0].startswith("did:"):
        return parts[0], parts[2]
    return None
