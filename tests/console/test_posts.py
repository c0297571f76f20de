"""A post's links as the queue shows them: its facets are the author's, so anything malformed is skipped whole."""

from __future__ import annotations

from typing import Any

from labeler.console.posts import LINK, MAX_LINKS, MAX_URI, Link, links

TEXT = "café link"  # "é" is two bytes: "link" is bytes 6-10


def facet(start: Any, end: Any, *features: Any) -> dict[str, Any]:
    return {"index": {"byteStart": start, "byteEnd": end}, "features": list(features)}


def link(uri: Any) -> dict[str, Any]:
    return {"$type": LINK, "uri": uri}


def test_links_are_read_from_link_facets_by_byte_range() -> None:
    mention = {"$type": "app.bsky.richtext.facet#mention", "did": "did:plc:x"}
    found = links(TEXT, [facet(6, 10, link("https://a.example/"), mention), facet(0, 5, link("javascript:x"))])
    assert found == [Link("link", "https://a.example/"), Link("café", "javascript:x")]
    assert [f.web for f in found] == [True, False]


def test_malformed_facets_are_skipped_and_links_are_bounded() -> None:
    hostile: list[Any] = [
        "not a facet",
        {"index": "x", "features": [link("https://a.example/")]},
        {"index": {"byteStart": 0, "byteEnd": 4}, "features": "x"},
        facet(0, 4, link(""), link(7), link("h" * (MAX_URI + 1)), {"uri": "https://no-type.example/"}),
    ]
    assert links(TEXT, hostile) == []
    assert links(TEXT, {"not": "a list"}) == []
    # Offsets out of range, reversed, not numbers, or inside a character: the link stays, its text is not made up.
    odd = [facet(-1, 4, link("https://1/")), facet(4, 2, link("https://2/")), facet("0", 4, link("https://3/"))]
    assert [(f.text, f.uri) for f in links(TEXT, odd)] == [("", "https://1/"), ("", "https://2/"), ("", "https://3/")]
    assert links(TEXT, [facet(0, 4, link("https://4/"))]) == [Link("caf\ufffd", "https://4/")]
    many = [facet(6, 10, link(f"https://{n}.example/")) for n in range(MAX_LINKS + 5)]
    assert len(links(TEXT, many)) == MAX_LINKS
