"""What a labeler serves, read as a consumer reads it, and checked as a strict consumer checks it: every label
against the `#atproto_label` key of its own `src` DID document, resolved afresh."""

from __future__ import annotations

import asyncio
import contextlib
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


class StrictSubscriber:
    """A consumer as strict as they come: subscribeLabels, and for every label the `src` DID resolved afresh
    (no cache) and the signature checked against the key the document names at that moment."""

    def __init__(self, ws_url: str, resolver: DidResolver, cursor: int = 0) -> None:
        self.url = f"{ws_url}{SUBSCRIBE}?cursor={cursor}"
        self.resolver = resolver
        self.verified_seq = 0  # the seq of the last label checked
        self.rejected: list[dict[str, Any]] = []
        self.keys: dict[str, int] = {}  # did:key → labels it verified
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async with connect(self.url, max_size=None) as ws:
            async for data in ws:
                assert isinstance(data, bytes)
                header, body = decode_frame(data)
                assert header == {"op": 1, "t": "#labels"}, body
                for label in body["labels"]:
                    key = await self.resolver.label_key(label["src"], force_refresh=True)
                    if key is not None and verify_received(label, key):
                        self.keys[key] = self.keys.get(key, 0) + 1
                    else:
                        self.rejected.append(label)
                self.verified_seq = body["seq"]

    async def until(self, seq: int) -> None:
        """Wait until every label up to `seq` has been checked."""
        while self.verified_seq < seq:
            if self.task.done():
                self.task.result()
                raise AssertionError("the subscriber stopped")
            await asyncio.sleep(0.01)

    async def aclose(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
