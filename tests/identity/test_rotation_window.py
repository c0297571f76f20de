"""No label signed by the old key is committed once the DID document names the new one (issue 14 item 3).

Labeler processes (two on PostgreSQL, one on SQLite) take labels as fast as writers send them while the label key
is rotated; a strict subscriber resolves the DID afresh for every label it receives and checks the signature
against the key the document names at that moment. Without the signing hold, the other processes went on signing
with the old key until their keyring reload (up to a second) and the subscriber rejected those labels.

A label committed *before* the document changed and checked after it fails too, whatever the labeler does: that
is the spec's accepted case (old labels are re-signed on read; the stream's copy may stay invalid). The directory
therefore applies the change only once the subscriber has checked every label committed until then
(`MemoryPlc.before_update`), as a consumer that keeps up would have; what is tested is what comes after.
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import pytest
from support.memory_plc import MemoryPlc, labeler_did
from support.serve_process import ServeProcess
from support.served_labels import StrictSubscriber
from support.server import RunningServer

from labeler.identity.plc_directory import PlcDirectory, update_did
from labeler.identity.resolver import DidResolver
from labeler.identity.rotation import rotate_label_key
from labeler.keys import Keyring
from labeler.protocol.crypto import SigningKey
from labeler.store.engine import create_engine
from labeler.store.signing_state import SigningHold

ENDPOINT = "https://labeler.example.com"
PASSWORD = "rotation-window-password"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}
WRITERS = 3  # per process
BEFORE, AFTER = 40, 40  # labels acknowledged before the rotation starts, and per process after it ends


async def db_head(database_url: str) -> int:
    """The database's last seq, read directly (from the directory's thread, with no labeler code)."""
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.split("///", 1)[1]) as conn:
            return int(conn.execute("SELECT coalesce(max(seq), 0) FROM labels").fetchone()[0])
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        return int(await conn.fetchval("SELECT coalesce(max(seq), 0) FROM labels"))
    finally:
        await conn.close()


async def write_until(process: ServeProcess, writer: int, stop: asyncio.Event, acked: list[int]) -> None:
    """One label per request, each acknowledged before the next; `acked[0]` counts them."""
    async with httpx.AsyncClient(base_url=process.url, timeout=120) as http:
        i = 0
        while not stop.is_set():
            body = {
                "event": {"$type": "tools.ozone.moderation.defs#modEventLabel", "createLabelVals": ["spam"],
                          "negateLabelVals": []},
                "subject": {"$type": "com.atproto.admin.defs#repoRef",
                            "did": f"did:plc:w{process.name}{writer}{i:021d}"},
                "createdBy": "did:plc:moderatorrotationwindow1",
            }  # fmt: skip
            response = await http.post("/xrpc/tools.ozone.moderation.emitEvent", json=body, headers=AUTH)
            assert response.status_code == 200, response.text
            acked[0] += 1
            i += 1


async def until(condition: Callable[[], bool], tasks: list[asyncio.Task[None]]) -> None:
    while not condition():
        for task in tasks:
            if task.done():
                task.result()
        await asyncio.sleep(0.02)


@pytest.mark.slow
async def test_no_old_key_label_after_the_document_changes(
    database_url: str,
    tmp_path: Path,
    plc_server: tuple[MemoryPlc, RunningServer],
    directory: PlcDirectory,
    resolver: DidResolver,
) -> None:
    plc, server = plc_server
    k1 = Keyring.open(tmp_path / "keys").generate()
    rotation_key = SigningKey.generate()
    did = await labeler_did(directory, rotation_key, k1.did_key, ENDPOINT)
    names = "ab" if database_url.startswith("postgresql") else "a"  # SQLite serves from one process
    processes = [
        ServeProcess(name, database_url, tmp_path, password=PASSWORD, did=did, LABELER_PLC_URL=server.url)
        for name in names
    ]
    engine = create_engine(database_url)
    strict_resolver = DidResolver(plc_url=server.url, refresh_cooldown=0)  # its own: no cache shared with ours
    subscriber: StrictSubscriber | None = None
    stop = asyncio.Event()
    try:
        await asyncio.gather(*(p.start() for p in processes))  # migrations serialise on their own lock
        subscriber = StrictSubscriber(processes[0].ws_url, strict_resolver)

        async def consumer_keeps_up(_did: str) -> None:
            assert subscriber is not None
            await subscriber.until(await db_head(database_url))

        plc.before_update = consumer_keeps_up
        acked = {p.name: [0] for p in processes}
        writers = [
            asyncio.create_task(write_until(p, w, stop, acked[p.name])) for p in processes for w in range(WRITERS)
        ]
        watched = [*writers, subscriber.task]
        await until(lambda: sum(a[0] for a in acked.values()) >= BEFORE, watched)

        async def publish(did_key: str, before_submit: Callable[[], Awaitable[None]]) -> None:
            change = lambda s: s.with_labeler(did_key, ENDPOINT)  # noqa: E731
            await update_did(directory, did, rotation_key, change, before_submit=before_submit)

        result = await rotate_label_key(
            Keyring.open(tmp_path / "keys"), did, resolver, publish=publish, hold=SigningHold(engine)
        )
        rotated_at = {name: a[0] for name, a in acked.items()}
        await until(lambda: all(acked[n][0] >= rotated_at[n] + AFTER for n in acked), watched)
        stop.set()
        await asyncio.gather(*writers)
        await subscriber.until(await db_head(database_url))
        assert subscriber.rejected == []
        assert subscriber.keys.get(k1.did_key, 0) > 0 and subscriber.keys.get(result.new.did_key, 0) > 0
    finally:
        stop.set()
        plc.before_update = None
        if subscriber is not None:
            await subscriber.aclose()
        await asyncio.gather(*(p.stop() for p in processes))
        await engine.dispose()
        await strict_resolver.aclose()
