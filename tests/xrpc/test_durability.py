"""Sequence durability (design.md invariant 2; protocol.md §3.4): seqs survive a restart and a SIGKILL.

An acknowledged label must never be lost, and seqs must never be reused or go backwards, or consumers holding a
cursor get `FutureCursor` forever or silently skip labels. The SIGKILL test runs the real `labeler serve` in a
subprocess and kills it while concurrent emitEvent writes are in flight.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import cbor2
import httpx
import pytest
from support.serve_process import ServeProcess
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from labeler.config import Settings
from labeler.keys import Keyring
from labeler.labels.writer import LabelRequest
from labeler.service import Labeler
from labeler.store.engine import create_engine
from labeler.store.labels import LabelStore
from labeler.testing import serve_labeler

PATH = "/xrpc/com.atproto.label.subscribeLabels"
PASSWORD = "durability-test-password"
WRITERS = 16
ACKS_BEFORE_KILL = 200


def subject(tag: str, n: int) -> str:
    return f"did:plc:{tag}{n:06d}"


async def stream_until(
    ws: ClientConnection, last_seq: int, *, into: dict[int, dict[str, Any]] | None = None
) -> dict[int, dict[str, Any]]:
    """seq → label for every frame until one with seq ≥ `last_seq`, checked to be in strictly increasing order."""
    seen: dict[int, dict[str, Any]] = {} if into is None else into
    previous = 0
    while previous < last_seq:
        data = await ws.recv()
        assert isinstance(data, bytes)
        stream = io.BytesIO(data)
        header, body = cbor2.load(stream), cbor2.load(stream)
        assert header == {"op": 1, "t": "#labels"}, body
        assert body["seq"] > previous
        previous = body["seq"]
        seen[previous] = body["labels"][0]
    return seen


# --- restart in process ---------------------------------------------------------------------------------------


async def test_restart_keeps_the_sequence_and_serves_old_labels(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    first = Labeler(settings)
    await first.start()
    try:
        old = await first.writer.write([LabelRequest(uri=subject("old", i), val="spam") for i in range(20)])
        old += [await first.writer.write_one(LabelRequest(uri=subject("old", 0), val="spam", neg=True))]
        before = await first.store.after(0, 1000)
    finally:
        await first.aclose()
    old_max = max(row.seq for row in old)

    second = Labeler(settings)
    await second.start()
    try:
        assert await second.store.after(0, 1000) == before, "the stored labels survive unchanged"
        async with serve_labeler(second) as live:
            # A consumer that saved the old head as its cursor resumes without FutureCursor and misses nothing.
            async with connect(f"{live.ws_url}{PATH}?cursor={old_max}", proxy=None) as resumed:
                new = await second.writer.write([LabelRequest(uri=subject("new", i), val="spam") for i in range(5)])
                assert list(await stream_until(resumed, new[-1].seq)) == [row.seq for row in new]
            async with connect(f"{live.ws_url}{PATH}?cursor=0", proxy=None) as full:
                served = await stream_until(full, new[-1].seq)
            async with httpx.AsyncClient(base_url=live.url) as http:
                response = await http.get(
                    "/xrpc/com.atproto.label.queryLabels", params={"uriPatterns": "did:plc:old*", "limit": 250}
                )
    finally:
        await second.aclose()
    assert min(row.seq for row in new) > old_max, "new seqs are strictly above the old maximum"
    assert list(served) == [row.seq for row in before] + [row.seq for row in new]
    assert response.status_code == 200
    assert [label["uri"] for label in response.json()["labels"]] == [row.label.uri for row in before]


# --- SIGKILL of `labeler serve` -------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve_process(database_url: str, workdir: Path) -> AsyncIterator[ServeProcess]:
    Keyring.open(workdir / "keys").generate()  # the operator's key: serve makes none for a did:plc
    process = ServeProcess("serve", database_url, workdir, password=PASSWORD, did="did:plc:labelerdurabilitytest1")
    try:
        yield process
    finally:
        await process.stop()


def emit_body(did: str) -> dict[str, Any]:
    return {
        "event": {
            "$type": "tools.ozone.moderation.defs#modEventLabel",
            "createLabelVals": ["spam"],
            "negateLabelVals": [],
        },
        "subject": {"$type": "com.atproto.admin.defs#repoRef", "did": did},
        "createdBy": "did:plc:moderatordurability1",
    }


def auth_headers() -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}


async def emit(http: httpx.AsyncClient, did: str) -> None:
    """One label write; returns only on a 200 (the acknowledgement). The view's `id` is the moderation event's
    id, not the label's seq, so seqs are taken from the stream."""
    response = await http.post("/xrpc/tools.ozone.moderation.emitEvent", json=emit_body(did), headers=auth_headers())
    assert response.status_code == 200, response.text


@pytest.mark.slow
async def test_sigkill_mid_stream_loses_no_acknowledged_label(database_url: str, tmp_path: Path) -> None:
    """Kill -9 while 16 clients write and a subscriber reads. After a restart: every acknowledged label is stored
    (once); every label the stream had already sent is still there with the same seq and the same bytes; new
    writes get seqs above everything stored."""
    acked: set[str] = set()
    attempted: set[str] = set()
    streamed_before: dict[int, dict[str, Any]] = {}
    enough = asyncio.Event()

    async def hammer(http: httpx.AsyncClient, worker: int) -> None:
        for i in range(100_000):
            did = subject(f"kill{worker:02d}x", i)
            attempted.add(did)
            try:
                await emit(http, did)
            except httpx.TransportError:
                return  # the server died under this request: not acknowledged
            acked.add(did)
            if len(acked) >= ACKS_BEFORE_KILL:
                enough.set()

    async def watch(ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            await stream_until(ws, 2**53, into=streamed_before)

    async with serve_process(database_url, tmp_path) as server:
        await server.start()
        limits = httpx.Limits(max_connections=WRITERS, max_keepalive_connections=WRITERS)
        async with (
            httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as http,
            connect(f"{server.ws_url}{PATH}?cursor=0", proxy=None) as watcher,
        ):
            watching = asyncio.create_task(watch(watcher))
            writers = [asyncio.create_task(hammer(http, n)) for n in range(WRITERS)]
            await enough.wait()
            await server.kill()  # writers are still sending: some requests are in flight
            await asyncio.gather(*writers, watching)
        assert attempted - acked, "the kill landed while writes were in flight"
        assert streamed_before, "the subscriber saw labels before the kill"

        await server.start()
        head = await _stored_head(database_url)
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            async with connect(f"{server.ws_url}{PATH}?cursor=0", proxy=None) as ws:
                streamed_after = await stream_until(ws, head)
            seq_of = {label["uri"]: seq for seq, label in streamed_after.items()}
            assert len(seq_of) == len(streamed_after), "one label per subject"
            for did in sorted(acked):
                assert did in seq_of, f"acknowledged {did} was lost"
                seq = seq_of[did]
                found = await _query(http, did, cursor=seq - 1)
                assert [(label["uri"], label["val"]) for label in found] == [(did, "spam")], did
                assert await _query(http, did, cursor=seq) == [], f"queryLabels has {did} at seq {seq}"
            async with connect(f"{server.ws_url}{PATH}?cursor={head}", proxy=None) as ws:
                await emit(http, subject("afterkill", 1))
                after = await stream_until(ws, head + 1)
    for seq, label in streamed_before.items():
        assert streamed_after.get(seq) == label, f"seq {seq} was sent before the kill and must survive unchanged"
    assert set(seq_of) <= attempted, "nothing appears that was never sent"
    ((new_seq, new_label),) = after.items()
    assert new_seq > head and new_label["uri"] == subject("afterkill", 1)


async def _query(http: httpx.AsyncClient, did: str, *, cursor: int) -> list[dict[str, Any]]:
    """queryLabels for one subject with seq > cursor (each subject has exactly one label)."""
    response = await http.get(
        "/xrpc/com.atproto.label.queryLabels", params={"uriPatterns": did, "cursor": cursor, "limit": 10}
    )
    assert response.status_code == 200, response.text
    labels: list[dict[str, Any]] = response.json()["labels"]
    return labels


async def _stored_head(database_url: str) -> int:
    """The highest stored seq, read from the database itself (the server is running; reading is safe)."""
    engine = create_engine(database_url)
    try:
        return await LabelStore(engine).head()
    finally:
        await engine.dispose()
