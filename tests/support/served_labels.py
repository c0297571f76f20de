"""What a labeler serves, read as a consumer reads it, and checked as a strict consumer checks it: every label
against the `#atproto_label` key of its own `src` DID document, resolved afresh."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from websockets.asyncio.client import connect

from labeler.identity.resolver import DidResolver
from labeler.protocol.frames import decode_frame
from labeler.protocol.label import verify_received

QUERY = "/xrpc/com.atproto.label.queryLabels"
SUBSCRIBE = "/xrpc/com.atproto.label.subscribeLabels"


async def query_all(url: str) -> list[dict[str, Any]]:
    """Every label queryLabels serves (`uriPatterns=*`), page by page."""
    out: list[dict[str, Any]] = []
    cursor = "0"
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while True:
            response = await http.get(QUERY, params={"uriPatterns": "*", "limit": 250, "cursor": cursor})
            response.raise_for_status()
            page = response.json()
            out.extend(page["labels"])
            if not page["labels"] or not page.get("cursor"):
                return out
            cursor = page["cursor"]


async def stream_until(ws_url: str, head: int, cursor: int = 0) -> list[tuple[int, dict[str, Any]]]:
    """(seq, label) of every label subscribeLabels sends from `cursor` until the frame with seq `head`."""
    out: list[tuple[int, dict[str, Any]]] = []
    async with connect(f"{ws_url}{SUBSCRIBE}?cursor={cursor}", max_size=None) as ws:
        async with asyncio.timeout(60):
            while True:
                data = await ws.recv()
                assert isinstance(data, bytes)
                header, body = decode_frame(data)
                assert header == {"op": 1, "t": "#labels"}, body
                out.extend((body["seq"], label) for label in body["labels"])
                if body["seq"] >= head:
                    return out


async def rejected(resolver: DidResolver, labels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The labels whose signature is not by the key their `src` DID document names now (resolved afresh)."""
    keys: dict[str, str | None] = {}
    bad = []
    for label in labels:
        src = label["src"]
        if src not in keys:
            keys[src] = await resolver.label_key(src, force_refresh=True)
        key = keys[src]
        if key is None or not verify_received(label, key):
            bad.append(label)
    return bad
