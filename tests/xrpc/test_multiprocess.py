"""Several `labeler serve` processes on one PostgreSQL (issue 6, done-means 1 and 2; design.md Storage, invariants
2 and 4).

Three real processes share a database. Labels written through all of them at once must reach every process's
subscribers (LISTEN/NOTIFY, poll fallback) as one identical, gap-free, duplicate-free sequence in seq order, equal
to what the database holds and to what queryLabels serves. Then one process is killed with SIGKILL mid-write: no
acknowledged label is lost and the other two keep writing and streaming everything, the dead one's last commits
included.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import cbor2
import httpx
import pytest
from support.serve_process import ServeProcess
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from labeler.config import load_settings
from labeler.keys import Keyring
from labeler.labels.writer import LabelRequest
from labeler.service import Labeler
from labeler.store.notify import APPLICATION_NAME

pytestmark = pytest.mark.postgres

PATH = "/xrpc/com.atproto.label.subscribeLabels"
PASSWORD = "multiprocess-test-password"
DID = "did:plc:labelermultiprocesstest1"
PROCESSES = 3
LABELS = 30_000
VALS_PER_REQUEST = 10
CLIENTS_PER_PROCESS = 8
KILL_PHASE_REQUESTS = 320  # per process, in the SIGKILL phase
TEST_TIMEOUT_S = 600


@contextlib.asynccontextmanager
async def serve_processes(database_url: str, workdir: Path) -> AsyncIterator[list[ServeProcess]]:
    # The key exists before any process starts, so they do not race to create one.
    Keyring.open(workdir / "keys").ensure_active()
    # The test's own readers share 2 cores with three servers and the writers; they are not what is tested.
    # The servers keep idle connections open longer than the test may run: a client can then never send a request
    # on a connection the server is closing at that moment (HTTP/1.1's keep-alive race, which a loaded machine
    # makes likely whatever the client's own expiry; emitEvent is not retried, so the race would fail the test).
    processes = [
        ServeProcess(
            name,
            database_url,
            workdir,
            password=PASSWORD,
            did=DID,
            LABELER_SUBSCRIBER_BUFFER="200000",
            LABELER_KEEPALIVE_TIMEOUT=str(TEST_TIMEOUT_S),
        )
        for name in "abc"[:PROCESSES]
    ]
    try:
        await asyncio.gather(*(p.start() for p in processes))  # migrations serialise on their own lock
        yield processes
    finally:
        await asyncio.gather(*(p.stop() for p in processes))


def pg_dsn(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def empty_database(database_url: str) -> None:
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
        if tables:
            await conn.execute(
                "TRUNCATE " + ", ".join(f'"{t["tablename"]}"' for t in tables) + " RESTART IDENTITY CASCADE"
            )
    finally:
        await conn.close()


async def stored_seqs(database_url: str, after: int) -> list[int]:
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        return [r["seq"] for r in await conn.fetch("SELECT seq FROM labels WHERE seq > $1 ORDER BY seq", after)]
    finally:
        await conn.close()


def emit_body(did: str, vals: list[str]) -> dict[str, Any]:
    return {
        "event": {"$type": "tools.ozone.moderation.defs#modEventLabel", "createLabelVals": vals, "negateLabelVals": []},
        "subject": {"$type": "com.atproto.admin.defs#repoRef", "did": did},
        "createdBy": "did:plc:moderatormultiprocess1",
    }


AUTH = {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}
VALS = ["spam", "nudity", "gore", "porn", "sexual", "graphic-media", "hash-match", "rude", "misleading", "scam"]
assert len(VALS) == VALS_PER_REQUEST


async def emit(http: httpx.AsyncClient, did: str) -> None:
    """Returns only once the labels are acknowledged (HTTP 200)."""
    response = await http.post("/xrpc/tools.ozone.moderation.emitEvent", json=emit_body(did, VALS), headers=AUTH)
    assert response.status_code == 200, response.text


class Reader:
    """Collects every raw frame one subscriber receives, until told to stop or the connection closes."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[bytes] = []
        self.seqs: list[int] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for data in self.ws:
                assert isinstance(data, bytes)
                header, body = decode(data)
                assert header == {"op": 1, "t": "#labels"}, body
                self.frames.append(data)
                self.seqs.append(body["seq"])

    async def until(self, seq: int) -> None:
        while not self.seqs or self.seqs[-1] < seq:
            assert not self.task.done(), f"subscriber ended early: {self.task}"
            await asyncio.sleep(0.05)


def decode(frame: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    stream = io.BytesIO(frame)
    header, body = cbor2.load(stream), cbor2.load(stream)
    assert stream.read() == b""
    return header, body


def check_stream(reader: Reader, expected: list[int], name: str) -> None:
    assert all(a < b for a, b in itertools.pairwise(reader.seqs)), f"{name}: seqs strictly increase (no duplicate)"
    assert reader.seqs[: len(expected)] == expected, f"{name}: gap-free, equal to the database"


async def query_all(http: httpx.AsyncClient, pattern: str) -> list[dict[str, Any]]:
    """Every label matching `pattern` through queryLabels, following the cursor to the end."""
    labels: list[dict[str, Any]] = []
    params: dict[str, Any] = {"uriPatterns": pattern, "limit": 250}
    while True:
        response = await http.get("/xrpc/com.atproto.label.queryLabels", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        labels += page["labels"]
        if not page.get("cursor"):
            return labels
        params["cursor"] = page["cursor"]


@pytest.mark.slow
@pytest.mark.timeout(TEST_TIMEOUT_S)
async def test_three_processes_stream_every_label_and_survive_a_sigkill(pg_database: str, tmp_path: Path) -> None:
    await empty_database(pg_database)
    async with serve_processes(pg_database, tmp_path) as servers:
        limits = httpx.Limits(max_connections=CLIENTS_PER_PROCESS, max_keepalive_connections=CLIENTS_PER_PROCESS)
        clients = [httpx.AsyncClient(base_url=s.url, limits=limits, timeout=120) for s in servers]
        try:
            # A label before the subscribers connect: their cursor is taken after it, before the writes.
            await emit(clients[0], "did:plc:mpseed")
            cursor = (await stored_seqs(pg_database, 0))[-1]
            sockets = [
                await connect(f"{s.ws_url}{PATH}?cursor={cursor}", proxy=None, compression=None, max_queue=None)
                for s in servers
            ]
            readers = [Reader(ws) for ws in sockets]

            # --- 30,000 labels through all three processes at once -------------------------------------------------
            requests = LABELS // VALS_PER_REQUEST
            subjects = iter(range(requests))

            async def writer(http: httpx.AsyncClient) -> None:
                for n in subjects:  # shared iterator: every client takes the next subject
                    await emit(http, f"did:plc:mpone{n:06d}")

            await asyncio.gather(*(writer(http) for http in clients for _ in range(CLIENTS_PER_PROCESS)))
            expected = await stored_seqs(pg_database, cursor)
            assert len(expected) == LABELS
            async with asyncio.timeout(240):
                await asyncio.gather(*(r.until(expected[-1]) for r in readers))
            for server, reader in zip(servers, readers, strict=True):
                check_stream(reader, expected, server.name)
                assert len(reader.seqs) == LABELS
            assert readers[1].frames == readers[0].frames == readers[2].frames, "identical bytes on every process"

            streamed = [decode(f)[1]["labels"][0] for f in readers[0].frames]
            assert {(label["uri"], label["val"]) for label in streamed} == {
                (f"did:plc:mpone{n:06d}", val) for n in range(requests) for val in VALS
            }
            for http in clients:
                served = await query_all(http, "did:plc:mpone*")
                assert [
                    (x["uri"], x["val"], x["cts"], base64.b64decode(x["sig"]["$bytes"] + "==")) for x in served
                ] == [(x["uri"], x["val"], x["cts"], x["sig"]) for x in streamed], (
                    "queryLabels serves the same labels in the same order"
                )

            # --- SIGKILL one process while all three are being written to --------------------------------------------
            acked: set[str] = set()
            attempted: set[str] = set()
            acked_after_kill: set[str] = set()
            killed, victim_busy = asyncio.Event(), asyncio.Event()
            victim = servers[2]

            async def hammer(index: int, http: httpx.AsyncClient, worker: int) -> None:
                for i in range(KILL_PHASE_REQUESTS // CLIENTS_PER_PROCESS):
                    did = f"did:plc:mptwo{index}x{worker:02d}x{i:05d}"
                    attempted.add(did)
                    try:
                        await emit(http, did)
                    except httpx.TransportError:
                        assert index == 2, "only the killed process may fail a write"
                        return
                    acked.add(did)
                    if index == 2 and i == 10:
                        victim_busy.set()  # some writes to the victim are acknowledged; others are in flight
                    if killed.is_set():
                        acked_after_kill.add(did)
                if index == 2:
                    pytest.fail("the victim was not killed while being written to")

            async def kill_midway() -> None:
                await victim_busy.wait()
                await victim.kill()
                killed.set()

            await asyncio.gather(
                kill_midway(),
                *(hammer(i, http, w) for i, http in enumerate(clients) for w in range(CLIENTS_PER_PROCESS)),
            )
            assert attempted - acked, "the kill landed while writes were in flight"
            assert {d for d in acked_after_kill if not d.startswith("did:plc:mptwo2")}, "the others kept writing"

            expected = await stored_seqs(pg_database, cursor)
            survivors = readers[:2]
            async with asyncio.timeout(240):
                await asyncio.gather(*(r.until(expected[-1]) for r in survivors))
            for server, reader in zip(servers[:2], survivors, strict=True):
                check_stream(reader, expected, server.name)
                assert len(reader.seqs) == len(expected)
            assert survivors[0].frames == survivors[1].frames
            await readers[2].task  # the victim's stream ended with its process
            assert readers[2].seqs == expected[: len(readers[2].seqs)], "what the victim sent was a prefix"

            stored_vals: dict[str, set[str]] = {}
            for frame in survivors[0].frames:
                label = decode(frame)[1]["labels"][0]
                stored_vals.setdefault(label["uri"], set()).add(label["val"])
            for did in acked:
                assert stored_vals.get(did) == set(VALS), f"acknowledged {did} lost"
            assert {d for d in stored_vals if d.startswith("did:plc:mptwo")} <= attempted
            for http in clients[:2]:
                served = await query_all(http, "did:plc:mptwo*")
                assert {(x["uri"], x["val"]) for x in served} == {
                    (uri, val) for uri, vals in stored_vals.items() if uri.startswith("did:plc:mptwo") for val in vals
                }
            for ws in sockets:
                await ws.close()
            await asyncio.gather(*(r.task for r in readers))
        finally:
            await asyncio.gather(*(http.aclose() for http in clients))


# --- LISTEN/NOTIFY in one process: two Labelers on one database, with the poll fallback switched off ------------


@contextlib.asynccontextmanager
async def labelers_without_poll(database_url: str, workdir: Path, count: int) -> AsyncIterator[list[Labeler]]:
    settings = load_settings(
        env={}, database_url=database_url, keys_dir=str(workdir / "keys"), admin_password=PASSWORD, did=DID,
        public_url="http://localhost:8080",
    )  # fmt: skip
    services = [Labeler(settings) for _ in range(count)]
    try:
        for service in services:
            assert service.hub is not None
            service.hub.poll_interval = 3600  # only a notification can move the hub
            await service.start()
        yield services
    finally:
        for service in services:
            await service.aclose()


async def hub_reaches(service: Labeler, seq: int) -> None:
    async with asyncio.timeout(30):
        while service.hub is None or service.hub.head < seq:  # noqa: ASYNC110 - the hub signals no event
            await asyncio.sleep(0.01)


def listener_of(service: Labeler) -> Any:
    assert service.hub is not None and service.hub._listener is not None
    return service.hub._listener


async def test_a_commit_in_one_process_reaches_the_others_hub_by_notification(pg_database: str, tmp_path: Path) -> None:
    await empty_database(pg_database)
    async with labelers_without_poll(pg_database, tmp_path, 2) as (one, two):
        await listener_of(two).connected.wait()
        rows = await one.writer.write([LabelRequest(uri=f"did:plc:notify{i:04d}", val="spam") for i in range(5)])
        await hub_reaches(two, rows[-1].seq)


async def test_the_listener_reconnects_after_its_connection_is_killed(pg_database: str, tmp_path: Path) -> None:
    await empty_database(pg_database)
    async with labelers_without_poll(pg_database, tmp_path, 2) as (one, two):
        listener = listener_of(two)
        await listener.connected.wait()
        admin = await asyncpg.connect(pg_dsn(pg_database))
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = $1",
                APPLICATION_NAME,
            )
        finally:
            await admin.close()
        assert killed >= 2  # both Labelers' listeners
        # Written while the listener is (probably) down: the reconnect's own nudge must catch it up.
        row = await one.writer.write_one(LabelRequest(uri="did:plc:notifygap", val="spam"))
        async with asyncio.timeout(30):
            while listener.connects < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await hub_reaches(two, row.seq)
        after = await one.writer.write_one(LabelRequest(uri="did:plc:notifyafter", val="spam"))
        await hub_reaches(two, after.seq)
