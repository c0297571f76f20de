"""subscribeLabels over a real socket (protocol.md §3; design.md invariants 2 and 4).

Checked from the outside: the atproto SDK's client and signature check, an independent CBOR decoder (cbor2) on raw
`websockets` frames, every cursor case, the backfill→live cutover under concurrent writes, negations, a consumer
that stops reading, and fan-out to many subscribers. No assertion depends on timing: tests wait for conditions.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import itertools
import json
import socket
import ssl
import struct
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from hashlib import sha256
from pathlib import Path
from typing import Any

import atproto
import cbor2
import libipld
import pytest
from atproto import models
from atproto_crypto.verify import verify_signature
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode

from labeler.config import Settings
from labeler.keys import Keyring
from labeler.labels import fanout
from labeler.labels.hub import FrameBatch, StreamHub, Subscriber
from labeler.labels.slots import RETRY_AFTER_S
from labeler.labels.writer import LabelRequest
from labeler.protocol.crypto import Curve
from labeler.protocol.frames import binary_frames
from labeler.service import Labeler
from labeler.store.labels import CommitResult, StoredLabel
from labeler.testing import LiveServer, serve_labeler
from labeler.xrpc.websocket import TransportFrameSink

PATH = "/xrpc/com.atproto.label.subscribeLabels"
LABELS_HEADER = {"op": 1, "t": "#labels"}
POLICY_VIOLATION = 1008

Frame = tuple[dict[str, Any], dict[str, Any]]


def subject(tag: str, n: int) -> str:
    return f"did:plc:{tag}{n:06d}"


def requests(tag: str, count: int, *, start: int = 0, val: str = "spam") -> list[LabelRequest]:
    return [LabelRequest(uri=subject(tag, start + i), val=val) for i in range(count)]


def decode(frame: bytes) -> Frame:
    """Split a frame with cbor2, independently of our encoder and of libipld: exactly two maps, nothing after."""
    stream = io.BytesIO(frame)
    header, body = cbor2.load(stream), cbor2.load(stream)
    assert stream.read() == b"", "trailing bytes after the body"
    assert isinstance(header, dict) and isinstance(body, dict)
    return header, body


def url(live: LiveServer, cursor: object = None) -> str:
    return f"{live.ws_url}{PATH}" + ("" if cursor is None else f"?cursor={cursor}")


@asynccontextmanager
async def subscribe(live: LiveServer, cursor: object = None, **options: Any) -> AsyncIterator[ClientConnection]:
    async with connect(url(live, cursor), proxy=None, compression=None, **options) as ws:
        yield ws


async def recv_frame(ws: ClientConnection) -> Frame:
    data = await ws.recv()
    assert isinstance(data, bytes), "frames are binary"
    return decode(data)


async def recv_labels(ws: ClientConnection, count: int) -> list[tuple[int, dict[str, Any]]]:
    """The next `count` frames, each a `#labels` message holding one label: (seq, label)."""
    out = []
    for _ in range(count):
        header, body = await recv_frame(ws)
        assert header == LABELS_HEADER, body
        assert set(body) == {"seq", "labels"}
        assert len(body["labels"]) == 1
        out.append((body["seq"], body["labels"][0]))
    return out


async def recv_until(ws: ClientConnection, last_seq: int) -> list[int]:
    """Seqs of every frame up to and including `last_seq` (a sentinel written to mark the end)."""
    seqs: list[int] = []
    while not seqs or seqs[-1] < last_seq:
        seqs += [seq for seq, _ in await recv_labels(ws, 1)]
    return seqs


async def expect_error_and_close(ws: ClientConnection, name: str) -> None:
    header, body = await recv_frame(ws)
    assert header == {"op": -1}
    assert body["error"] == name
    with pytest.raises(ConnectionClosed) as closed:
        await ws.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (POLICY_VIOLATION, name)


async def refused(live: LiveServer, cursor: object = None, **options: Any) -> tuple[int, str, str]:
    """A handshake the server turns away: (HTTP status, XRPC error name, message), with its Retry-After checked."""
    with pytest.raises(InvalidStatus) as info:
        async with subscribe(live, cursor, **options):
            pass
    response = info.value.response
    assert response.headers["retry-after"] == str(RETRY_AFTER_S)
    body = json.loads(response.body or b"")
    assert set(body) == {"error", "message"}
    return response.status_code, body["error"], body["message"]


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until `condition` holds (bounded by the pytest timeout, not asserted on time)."""
    while not condition():  # noqa: ASYNC110 - the state belongs to server objects that signal no event
        await asyncio.sleep(0.005)


async def fanned_out(hub: StreamHub, seq: int) -> None:
    await until(lambda: hub.head >= seq)


def hub_of(live: LiveServer) -> StreamHub:
    assert live.labeler.hub is not None
    return live.labeler.hub


def cbor_of(row: StoredLabel) -> dict[str, Any]:
    decoded: dict[str, Any] = cbor2.loads(row.label.to_cbor())
    return decoded


# --- the SDK's client ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("curve", [Curve.K256, Curve.P256])
async def test_sdk_client_backfills_from_zero_then_live_and_signatures_verify(
    make_settings: Callable[..., Settings], curve: Curve
) -> None:
    settings = make_settings()
    key = Keyring.open(settings.keys_dir).generate(curve, activate=True)
    service = Labeler(settings)
    await service.start()
    try:
        async with serve_labeler(service) as live:
            old = await service.writer.write(
                [*requests("old", 5), LabelRequest(uri=subject("old", 0), val="spam", neg=True)]
            )
            expected_backfill = await service.store.after(0, 100)
            assert len(expected_backfill) == 5  # the negation replaced the first create
            received: list[models.ComAtprotoLabelSubscribeLabels.Labels] = []
            callback_errors: list[BaseException] = []
            backfilled, finished = asyncio.Event(), asyncio.Event()

            async def on_message(frame: Any) -> None:
                message = atproto.parse_subscribe_labels_message(frame)
                assert isinstance(message, models.ComAtprotoLabelSubscribeLabels.Labels)
                received.append(message)
                if len(received) == len(expected_backfill):
                    backfilled.set()
                if len(received) == len(expected_backfill) + 3:
                    finished.set()

            async def on_error(exc: BaseException) -> None:
                callback_errors.append(exc)

            client = atproto.AsyncFirehoseSubscribeLabelsClient(params={"cursor": 0}, base_uri=f"{live.ws_url}/xrpc")
            task = asyncio.create_task(client.start(on_message, on_error))
            try:
                await _event_or_end(backfilled, task)
                new = await service.writer.write(requests("new", 3))
                await _event_or_end(finished, task)
            finally:
                await client.stop()
                await task
    finally:
        await service.aclose()

    assert callback_errors == []
    assert [m.seq for m in received] == [r.seq for r in expected_backfill] + [r.seq for r in new]
    assert old[-1].seq == expected_backfill[-1].seq and expected_backfill[-1].label.neg
    for message in received:
        (label,) = message.labels
        assert label.src == settings.did
        unsigned = label.model_dump(exclude_none=True, by_alias=True, exclude={"sig", "py_type"})
        assert isinstance(label.sig, bytes) and len(label.sig) == 64
        assert verify_signature(key.did_key, libipld.encode_dag_cbor(unsigned), label.sig), unsigned


async def _event_or_end(event: asyncio.Event, client_task: asyncio.Task[None]) -> None:
    """Wait for `event`; if the client's start() ends first, surface why."""
    waiter = asyncio.create_task(event.wait())
    await asyncio.wait({waiter, client_task}, return_when=asyncio.FIRST_COMPLETED)
    if not event.is_set():
        waiter.cancel()
        client_task.result()
        pytest.fail("the SDK client returned before receiving what was expected")


# --- raw frames ---------------------------------------------------------------------------------------------


async def test_raw_frames_are_two_cbor_maps_with_byte_signatures(server: LiveServer) -> None:
    cid = libipld.encode_cid(b"\x01\x71\x12\x20" + sha256(b"record").digest())
    stored = await server.labeler.writer.write(
        [
            LabelRequest(uri=subject("raw", 1), val="spam"),
            LabelRequest(uri=f"at://{subject('raw', 2)}/app.bsky.feed.post/3kabc", cid=cid, val="porn"),
            LabelRequest(uri=subject("raw", 3), val="gore", exp="2099-01-01T00:00:00.000Z"),
            LabelRequest(uri=subject("raw", 4), val="spam", neg=True),
        ]
    )
    async with subscribe(server, 0) as ws:
        got = await recv_labels(ws, len(stored))
    assert [seq for seq, _ in got] == [row.seq for row in stored]
    for (_, label), row in zip(got, stored, strict=True):
        assert label == cbor_of(row)
        assert isinstance(label["sig"], bytes) and len(label["sig"]) == 64
        assert label["ver"] == 1 and "$type" not in label
        assert ("neg" in label) == row.label.neg
    assert got[1][1]["cid"] == cid and got[3][1]["neg"] is True


# --- cursors ------------------------------------------------------------------------------------------------


@pytest.fixture
async def ten(server: LiveServer) -> list[StoredLabel]:
    """Ten labels, committed one by one (distinct transactions), before anyone subscribes."""
    rows = [await server.labeler.writer.write_one(r) for r in requests("pre", 10)]
    await fanned_out(hub_of(server), rows[-1].seq)
    return rows


async def test_no_cursor_is_live_only(server: LiveServer, ten: list[StoredLabel]) -> None:
    async with subscribe(server) as ws:
        new = await server.labeler.writer.write(requests("live", 2))
        assert [seq for seq, _ in await recv_labels(ws, 2)] == [row.seq for row in new]


async def test_no_cursor_sees_a_label_committed_right_after_the_handshake(
    server: LiveServer, ten: list[StoredLabel], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that has its 101 may write (or cause) a label at once; that label must reach it. Reproduced
    deterministically by committing and fanning out a label as soon as the server has sent the handshake."""
    original = WebSocket.accept
    written: list[StoredLabel] = []

    async def accept_then_write(self: WebSocket, *args: Any, **kwargs: Any) -> None:
        await original(self, *args, **kwargs)
        written.append(await server.labeler.writer.write_one(LabelRequest(uri=subject("race", 1), val="spam")))
        await fanned_out(hub_of(server), written[-1].seq)

    monkeypatch.setattr(WebSocket, "accept", accept_then_write)
    async with subscribe(server) as ws:
        await until(lambda: bool(written))
        sentinel = await server.labeler.writer.write_one(LabelRequest(uri=subject("race", 2), val="spam"))
        assert await recv_until(ws, sentinel.seq) == [written[0].seq, sentinel.seq]


async def test_cursor_zero_sends_everything_then_live(server: LiveServer, ten: list[StoredLabel]) -> None:
    async with subscribe(server, 0) as ws:
        got = await recv_labels(ws, 10)
        assert [seq for seq, _ in got] == [row.seq for row in ten]
        assert [label for _, label in got] == [cbor_of(row) for row in ten]
        sentinel = await server.labeler.writer.write_one(LabelRequest(uri=subject("end", 1), val="spam"))
        assert await recv_until(ws, sentinel.seq) == [sentinel.seq]


@pytest.mark.parametrize("k", [0, 3, 8])
async def test_cursor_k_sends_exactly_the_seqs_above_it(server: LiveServer, ten: list[StoredLabel], k: int) -> None:
    cursor = ten[k].seq
    async with subscribe(server, cursor) as ws:
        sentinel = await server.labeler.writer.write_one(LabelRequest(uri=subject("end", 1), val="spam"))
        assert await recv_until(ws, sentinel.seq) == [row.seq for row in ten[k + 1 :]] + [sentinel.seq]


async def test_cursor_between_seqs(server: LiveServer, ten: list[StoredLabel]) -> None:
    """Seqs may have gaps; a cursor inside a gap still means 'everything above it'."""
    gaps = [(a, b) for a, b in itertools.pairwise(ten) if b.seq - a.seq > 1]
    assert gaps, "seqs are time-based (microseconds), so separate commits leave gaps"
    before, after = gaps[0]
    async with subscribe(server, before.seq + 1) as ws:
        sentinel = await server.labeler.writer.write_one(LabelRequest(uri=subject("end", 1), val="spam"))
        seqs = await recv_until(ws, sentinel.seq)
    assert seqs == [row.seq for row in ten if row.seq >= after.seq] + [sentinel.seq]


async def test_cursor_at_head_waits_for_new_labels(server: LiveServer, ten: list[StoredLabel]) -> None:
    async with subscribe(server, ten[-1].seq) as ws:
        sentinel = await server.labeler.writer.write_one(LabelRequest(uri=subject("end", 1), val="spam"))
        assert await recv_until(ws, sentinel.seq) == [sentinel.seq]


async def test_future_cursor_gets_error_frame_and_1008(server: LiveServer, ten: list[StoredLabel]) -> None:
    async with subscribe(server, ten[-1].seq + 1000) as ws:
        await expect_error_and_close(ws, "FutureCursor")
    assert hub_of(server).subscribers == set()


@pytest.mark.parametrize("cursor", ["abc", "-1", "1.5", "", "0x10", "9" * 30])
async def test_invalid_cursor_gets_invalid_request(server: LiveServer, ten: list[StoredLabel], cursor: str) -> None:
    async with subscribe(server, cursor) as ws:
        await expect_error_and_close(ws, "InvalidRequest")
    assert hub_of(server).subscribers == set()


def hold_backfill_reads(store: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[asyncio.Event, list[int]]:
    """Make the connections' backfill reads wait for the returned event; the list records the cursors that wait.
    Only the connections' reads: the hub's own catch-up (tasks named stream-hub*) reads through `after_rows` too,
    and on PostgreSQL a NOTIFY starts one at any moment; holding it would hold the fan-out of the whole test."""
    real_after = store.after_rows
    release = asyncio.Event()
    blocked: list[int] = []

    async def after(seq: int, limit: int) -> list[Any]:
        task = asyncio.current_task()
        if task is None or not task.get_name().startswith("stream-hub"):
            blocked.append(seq)
            await release.wait()
        return await real_after(seq, limit)

    monkeypatch.setattr(store, "after_rows", after)
    return release, blocked


async def test_max_subscribers_counts_connections_still_backfilling(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two connections held in backfill (not yet registered with the hub) fill a limit of two; a third is refused."""
    service = Labeler(make_settings(max_subscribers=2))
    await service.start()
    try:
        rows = await service.writer.write(requests("cap", 3))
        await fanned_out(service.hub, rows[-1].seq)  # type: ignore[arg-type]
        release, blocked = hold_backfill_reads(service.store, monkeypatch)
        async with serve_labeler(service) as live, subscribe(live, 0) as one, subscribe(live, 0) as two:
            await until(lambda: len(blocked) == 2)
            assert await refused(live, 0) == (503, "ServiceUnavailable", "too many subscribers")
            release.set()
            for ws in (one, two):
                assert [seq for seq, _ in await recv_labels(ws, 3)] == [row.seq for row in rows]
        await until(lambda: hub_of(live).slots.in_use == 0)
    finally:
        await service.aclose()


async def test_simultaneous_handshakes_cannot_all_pass_the_subscriber_cap(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #16.2: the cap used to be checked before a database round trip (`store.head()`, for a cursor) and
    counted after it, so connections arriving together all passed. Five handshakes whose head read is held until
    all five are in: two get streams, three get the error frame."""
    service = Labeler(make_settings(max_subscribers=2))
    await service.start()
    try:
        rows = await service.writer.write(requests("race", 2))
        real_head = service.store.head
        waiting: list[None] = []
        release = asyncio.Event()

        async def head() -> int:
            task = asyncio.current_task()
            if task is not None and not task.get_name().startswith("stream-hub"):
                waiting.append(None)
                await release.wait()
            return await real_head()

        monkeypatch.setattr(service.store, "head", head)
        async with serve_labeler(service) as live:
            handshakes = [connect(url(live, 0), proxy=None, compression=None) for _ in range(5)]
            answers = await asyncio.gather(*handshakes, return_exceptions=True)
            clients = [a for a in answers if isinstance(a, ClientConnection)]
            try:
                # Fixed: two hold slots and wait; the others are refused at the handshake. Broken: all five wait.
                await until(lambda: len(waiting) == 5 or (len(waiting) == 2 and hub_of(live).slots.in_use == 2))
                release.set()
                outcomes = await asyncio.gather(*(recv_frame(ws) for ws in clients))
            finally:
                await asyncio.gather(*(ws.close() for ws in clients))
            turned_away = [a.response.status_code for a in answers if isinstance(a, InvalidStatus)]
            assert turned_away == [503] * 3, answers
            assert [body["seq"] for header, body in outcomes if header == LABELS_HEADER] == [rows[0].seq] * 2
            await until(lambda: hub_of(live).slots.in_use == 0)
    finally:
        await service.aclose()


async def test_subscriptions_are_capped_per_client_network(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`LABELER_MAX_SUBSCRIBERS_PER_CLIENT=2`: a third stream from 127.0.0.1 is refused while another client (named
    by X-Forwarded-For, which uvicorn trusts from loopback) still gets one; two IPv6 addresses of one /64 share a
    cap, one of another /64 does not."""
    service = Labeler(make_settings(max_subscribers_per_client=2))
    await service.start()
    try:
        await service.writer.write(requests("ip", 1))
        release, _blocked = hold_backfill_reads(service.store, monkeypatch)

        def via(address: str) -> dict[str, Any]:
            return {"additional_headers": {"X-Forwarded-For": address}}

        async with serve_labeler(service) as live, subscribe(live, 0), subscribe(live, 0):
            await until(lambda: hub_of(live).slots.held_by("127.0.0.1") == 2)
            assert await refused(live, 0) == (
                429,
                "RateLimitExceeded",
                "too many subscriptions from one client (at most 2)",
            )
            async with (
                subscribe(live, 0, **via("203.0.113.7")),
                subscribe(live, 0, **via("2001:db8:1:2::1")),
                subscribe(live, 0, **via("2001:db8:1:2:ffff::9")),
            ):
                await until(lambda: hub_of(live).slots.in_use == 5)
                status, _, message = await refused(live, 0, **via("2001:db8:1:2::77"))
                assert status == 429 and "at most 2" in message
                async with subscribe(live, 0, **via("2001:db8:1:3::1")):
                    await until(lambda: hub_of(live).slots.held_by("2001:db8:1:3::/64") == 1)
                release.set()
        await until(lambda: hub_of(live).slots.in_use == 0)
    finally:
        await service.aclose()


@pytest.mark.timeout(60)
async def test_a_backfill_client_that_reads_nothing_is_dropped_and_its_socket_released(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #15.16: `cursor=0` clients that never read held their slot for SEND_TIMEOUT and their TCP connection
    for minutes (a close waits for a buffer nobody reads). SEND_TIMEOUT is set out of reach here, so only the
    connection's stall check (`LABELER_CLIENT_STALL_TIMEOUT`, 1 s) can end it: the slot comes back, and the
    client's socket is reset by the server (before the fix this test waits until its timeout)."""
    monkeypatch.setattr("labeler.xrpc.subscribe_labels.SEND_TIMEOUT", 3600.0)
    service = Labeler(make_settings(client_stall_timeout=1.0))
    await service.start()
    try:
        for start in range(0, 3000, 1000):
            await service.writer.write(
                [LabelRequest(uri=f"{subject('mute', start + i)}{'x' * 300}", val="spam") for i in range(1000)]
            )
        async with serve_labeler(service, send_buffer=16 * 1024) as live:
            sock = small_receive_buffer_socket(live, 4096)
            sock.sendall(upgrade_request(f"{PATH}?cursor=0"))
            hub = hub_of(live)
            await until(lambda: hub.slots.in_use == 1)
            await until(lambda: hub.slots.in_use == 0)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            with pytest.raises(ConnectionResetError):
                while await loop.sock_recv(sock, 1 << 20):
                    pass  # an abort resets the connection: the kernel drops what was unread
            sock.close()
    finally:
        await service.aclose()


async def test_a_slow_but_steady_backfill_reader_is_not_cut_off(make_settings: Callable[..., Settings]) -> None:
    """The stall check cuts off a client that takes nothing, not one that takes little: a reader of 4 KiB every
    50 ms, far slower than the server writes, gets all 2,000 labels of its backfill with a 1 s stall timeout."""
    service = Labeler(make_settings(client_stall_timeout=1.0))
    await service.start()
    try:
        rows = await service.writer.write(
            [LabelRequest(uri=f"{subject('slow', i)}{'x' * 300}", val="spam") for i in range(2000)]
        )
        async with serve_labeler(service, send_buffer=16 * 1024) as live:
            sock = small_receive_buffer_socket(live, 4096)
            async with connect(url(live, 0), sock=sock, proxy=None, compression=None, max_queue=1) as ws:
                seqs: list[int] = []
                while len(seqs) < len(rows):
                    batch = min(12, len(rows) - len(seqs))  # ~4 KiB of frames
                    seqs += [seq for seq, _ in await recv_labels(ws, batch)]
                    await asyncio.sleep(0.05)
        assert seqs == [row.seq for row in rows]
    finally:
        await service.aclose()


def upgrade_request(path: str = PATH, extra: bytes = b"") -> bytes:
    """A WebSocket upgrade request as raw bytes, with `extra` header lines."""
    head = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    )
    return head.encode() + extra + b"\r\n"


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    data = b""
    while chunk := await reader.read(65536):
        data += chunk
    return data


@pytest.mark.parametrize(
    "extra",
    [b"Transfer-Encoding: chunked\r\n", b"Content-Length: 5\r\n"],
    ids=["transfer-encoding", "content-length"],
)
async def test_an_upgrade_websockets_cannot_parse_is_answered_400_and_closed(server: LiveServer, extra: bytes) -> None:
    """uvicorn's HTTP parser accepts these upgrades, websockets' handshake parser refuses them; uvicorn before 0.55
    answered nothing, and the connection stayed open until the client gave up (issue #15.15)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(upgrade_request(extra=extra))
        answer = await read_to_eof(reader)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"\r\nconnection: close\r\n" in answer.lower()  # and read_to_eof saw the connection end


# --- backfill → live cutover ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cursor", [0, None])
async def test_cutover_has_no_gap_and_no_duplicate(
    server: LiveServer, ten: list[StoredLabel], monkeypatch: pytest.MonkeyPatch, cursor: int | None
) -> None:
    """Deterministic cutover: one label is committed and fanned out just after the last backfill page was read
    but before the connection registers with the hub (only a catch-up query can deliver it: no gap), and one just
    after it registered but before that catch-up query (it reaches both the query and the live buffer: no
    duplicate)."""
    store, hub = server.labeler.store, hub_of(server)
    real_after = store.after_rows  # the connection's backfill and catch-up reads (the hub's own use `after`)
    before_register: list[StoredLabel] = []
    after_register: list[StoredLabel] = []

    async def write_and_fan_out(out: list[StoredLabel], n: int) -> None:
        out.append(await server.labeler.writer.write_one(LabelRequest(uri=subject("cut", n), val="spam")))
        await fanned_out(hub, out[-1].seq)

    async def after(seq: int, limit: int) -> list[Any]:
        first_catch_up = bool(hub.subscribers) and not after_register
        if first_catch_up:
            await write_and_fan_out(after_register, 2)
        rows = await real_after(seq, limit)
        if not hub.subscribers and len(rows) < limit and not before_register:
            await write_and_fan_out(before_register, 1)
        if first_catch_up:
            caught_up.set()
        return rows

    caught_up = asyncio.Event()
    monkeypatch.setattr(store, "after_rows", after)
    async with subscribe(server, cursor) as ws:
        await caught_up.wait()  # the sentinel must come after that query, so it arrives live only
        sentinel = await server.labeler.writer.write_one(LabelRequest(uri=subject("end", 1), val="spam"))
        seqs = await recv_until(ws, sentinel.seq)
    backfill = [row.seq for row in ten] if cursor == 0 else []
    assert seqs == [*backfill, before_register[0].seq, after_register[0].seq, sentinel.seq]


def small_receive_buffer_socket(live: LiveServer, size: int = 16 * 1024) -> socket.socket:
    """A connected client socket with a fixed, small receive buffer (no autotuning), so the server cannot run
    far ahead of a slow reader: its backfill then really overlaps the reader's progress."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    sock.connect(("127.0.0.1", live.port))
    return sock


@pytest.mark.slow
async def test_labels_written_during_a_long_backfill_arrive_once_in_order(make_settings: Any) -> None:
    """5,000 labels exist; while a slow reader backfills from 0, a writer adds 500 more in 50 commits, paced by
    the reader's progress, then a sentinel. Every label arrives exactly once, in seq order, and the stream
    equals the store's current state."""
    service = Labeler(make_settings(backfill_page_size=500))
    await service.start()
    try:
        for start in range(0, 5000, 500):
            await service.writer.write(requests("bulk", 500, start=start))
        async with serve_labeler(service, send_buffer=16 * 1024) as live:
            hub = hub_of(live)
            triggers: asyncio.Queue[int] = asyncio.Queue()
            registered_at_write: list[bool] = []
            sentinel: list[StoredLabel] = []

            async def writer() -> None:
                for batch in range(50):
                    await triggers.get()
                    registered_at_write.append(bool(hub.subscribers))
                    await service.writer.write(requests("during", 10, start=batch * 10))
                sentinel.append(await service.writer.write_one(LabelRequest(uri=subject("end", 1), val="spam")))

            writing = asyncio.create_task(writer())
            seqs: list[int] = []
            labels: list[dict[str, Any]] = []
            sock = small_receive_buffer_socket(live)
            async with connect(url(live, 0), sock=sock, proxy=None, compression=None, max_queue=4) as ws:
                while not sentinel or seqs[-1] != sentinel[0].seq:
                    ((seq, label),) = await recv_labels(ws, 1)
                    seqs.append(seq)
                    labels.append(label)
                    if len(seqs) % 200 == 0 or len(seqs) > 5000:
                        triggers.put_nowait(len(seqs))  # the writer takes 50 of these
                    if len(seqs) % 20 == 0:
                        await asyncio.sleep(0.001)  # read slowly
            await writing
            stored = await service.store.after(0, 100_000)
    finally:
        await service.aclose()
    assert False in registered_at_write, "some writes landed while the reader was still backfilling"
    assert True in registered_at_write, "some writes landed once it was registered for live frames"
    assert len(seqs) == 5501
    assert all(a < b for a, b in itertools.pairwise(seqs)), "strictly increasing seq, no duplicate"
    assert seqs == [row.seq for row in stored], "no gap: the stream is exactly the stored labels"
    assert labels == [cbor_of(row) for row in stored]


# --- negations and re-labels ----------------------------------------------------------------------------------


async def test_negation_and_relabel_move_the_row(server: LiveServer) -> None:
    writer = server.labeler.writer
    a, b = subject("neg", 1), subject("neg", 2)
    head = (await writer.write([LabelRequest(uri=subject("neg", 0), val="spam")]))[0].seq
    async with subscribe(server, head) as live_ws:
        # Live from here on: until the hub has the subscriber, commits reach it by catch-up (current state only),
        # which leaves out the create that the negation below supersedes.
        await until(lambda: len(hub_of(server).subscribers) == 1)
        created = await writer.write([LabelRequest(uri=a, val="spam"), LabelRequest(uri=b, val="spam")])
        negated = await writer.write_one(LabelRequest(uri=a, val="spam", neg=True))
        relabelled = await writer.write_one(LabelRequest(uri=b, val="spam"))
        recreated = await writer.write_one(LabelRequest(uri=a, val="spam"))
        live = await recv_labels(live_ws, 5)
    events = [*created, negated, relabelled, recreated]
    assert [seq for seq, _ in live] == [row.seq for row in events], "live shows every event"
    assert [label.get("neg", False) for _, label in live] == [False, False, True, False, False]

    async with subscribe(server, head) as ws:
        sentinel = await writer.write_one(LabelRequest(uri=subject("end", 1), val="spam"))
        backfill = await recv_until(ws, sentinel.seq)
    assert backfill == [relabelled.seq, recreated.seq, sentinel.seq], "backfill shows the latest state only"

    async with subscribe(server, sentinel.seq) as ws:
        await writer.write_one(LabelRequest(uri=a, val="spam", neg=True))
        ((seq, label),) = await recv_labels(ws, 1)
    assert seq > sentinel.seq and label["uri"] == a and label["neg"] is True
    assert [row.seq for row in await server.labeler.store.after(head, 100)] == [relabelled.seq, sentinel.seq, seq]


async def test_live_sees_every_event_when_a_poll_nudge_races_the_commits(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub's poll can see a new head before the writer has handed over the commit (it queues a catch-up ahead
    of the commit). A catch-up reads current state only, so a create superseded by a negation in a later commit
    would vanish from the live stream. Reproduced by holding two commits back and queueing a nudge first."""
    hub = hub_of(server)
    writer = server.labeler.writer
    head = (await writer.write_one(LabelRequest(uri=subject("poll", 0), val="spam"))).seq
    await fanned_out(hub, head)
    held: list[CommitResult] = []

    def publish(result: CommitResult) -> None:
        if holding:
            held.append(result)
        else:
            StreamHub.publish(hub, result)

    holding = True
    monkeypatch.setattr(hub, "publish", publish)
    monkeypatch.setattr(hub, "nudge", lambda: None)  # the periodic poll stays quiet while commits are held
    async with subscribe(server, head) as ws:
        await until(lambda: bool(hub.subscribers))
        created = await writer.write_one(LabelRequest(uri=subject("poll", 1), val="spam"))
        negated = await writer.write_one(LabelRequest(uri=subject("poll", 1), val="spam", neg=True))
        assert len(held) == 2
        StreamHub.nudge(hub)  # the poll saw the new head first
        for result in held:
            StreamHub.publish(hub, result)
        holding = False
        sentinel = await writer.write_one(LabelRequest(uri=subject("end", 1), val="spam"))
        seqs = await recv_until(ws, sentinel.seq)
    assert seqs == [created.seq, negated.seq, sentinel.seq]


# --- a consumer that stops reading -------------------------------------------------------------------------


@pytest.mark.slow
async def test_reader_that_stops_reading_gets_consumer_too_slow(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    peak: dict[int, int] = {}
    original_queue = Subscriber.queue

    def queue(self: Subscriber, batch: FrameBatch) -> None:
        original_queue(self, batch)
        peak[id(self)] = max(peak.get(id(self), 0), len(self.frames))

    monkeypatch.setattr(Subscriber, "queue", queue)
    service = Labeler(make_settings(subscriber_buffer=50, writer_max_batch=25))
    await service.start()
    try:
        async with serve_labeler(service) as live:
            hub = hub_of(live)
            sock = small_receive_buffer_socket(live)
            async with connect(url(live), sock=sock, proxy=None, compression=None, max_queue=1) as stalled:
                await until(lambda: len(hub.subscribers) == 1)
                (sub,) = hub.subscribers
                # Commits smaller than the buffer, so only the stalled socket can make the subscriber fall behind.
                # Socket buffers decide how much fits before that: wait for the state rather than guess a count.
                # Long subjects (1.5 kB frames) fill those buffers with fewer labels.
                written = 0
                while not sub.too_slow:
                    rows = await service.writer.write(
                        [LabelRequest(uri=f"{subject('slow', written + i)}{'x' * 1500}", val="spam") for i in range(25)]
                    )
                    await fanned_out(hub, rows[-1].seq)
                    written += len(rows)
                    assert all(len(s.frames) <= s.limit for s in hub.subscribers)
                    assert max(peak.values(), default=0) <= 50, (
                        "the buffer never exceeds its limit, even between checks"
                    )
                    assert written < 50_000, "a reader that never reads must be cut off"
                assert len(sub.frames) == 0, "a too-slow subscriber's buffer is released"
                # Now read again: what was already in flight, then the error frame and a 1008 close.
                header: dict[str, Any] = {}
                body: dict[str, Any] = {}
                seqs: list[int] = []
                while header != {"op": -1}:
                    header, body = await recv_frame(stalled)
                    if header == LABELS_HEADER:
                        seqs.append(body["seq"])
                assert body["error"] == "ConsumerTooSlow"
                with pytest.raises(ConnectionClosed) as closed:
                    await stalled.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == POLICY_VIOLATION
                assert seqs == sorted(set(seqs)), "what did arrive is in order, without duplicates"
            await until(lambda: not hub.subscribers)
    finally:
        await service.aclose()
    assert peak and max(peak.values()) <= 50


async def test_a_reader_that_keeps_up_survives_a_burst_of_concurrent_writes(server: LiveServer) -> None:
    """Default settings. 14 concurrent writes of 150 labels are queued before the committer runs; no commit may
    exceed writer_max_batch, and the buffer holds at least two commits, so a reader that keeps up is never cut."""
    writer = server.labeler.writer
    head = (await writer.write_one(LabelRequest(uri=subject("burst", 0), val="spam"))).seq
    settings = server.labeler.settings
    assert settings.subscriber_buffer >= 2 * settings.writer_max_batch
    async with subscribe(server, head) as ws:
        await until(lambda: bool(hub_of(server).subscribers))
        batches = await asyncio.gather(
            *(writer.write(requests(f"burst{n}x", 150)) for n in range(14)),
            writer.write(requests("burst-big", 2500)),  # one write() larger than a batch is split across commits
        )
        last = max(row.seq for batch in batches for row in batch)
        assert len(await recv_until(ws, last)) == 2100 + 2500


# --- many subscribers ---------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 3])
async def test_two_hundred_subscribers_receive_identical_sequences(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    """Also with the fan-out's writes shared out between the event loop and helper threads (labeler.labels.fanout)."""
    writers: set[int] = set()
    original_write = fanout._write

    def write(wire: bytes, fd: int) -> int:
        writers.add(threading.get_ident())
        return original_write(wire, fd)

    monkeypatch.setattr(fanout, "_write", write)
    service = Labeler(make_settings(fan_out_threads=threads, max_subscribers_per_client=200))
    await service.start()
    try:
        async with serve_labeler(service) as server:
            streams, expected = await _two_hundred_subscribers(server)
            await until(lambda: not hub_of(server).subscribers)
    finally:
        await service.aclose()
    first = streams[0]
    assert [decode(f)[1]["seq"] for f in first] == [row.seq for row in expected]
    assert all(stream == first for stream in streams), "every subscriber got the same bytes in the same order"
    assert (len(writers) > 1) == (threads > 1), "with helpers, live frames were written from more than one thread"


async def _two_hundred_subscribers(server: LiveServer) -> tuple[list[list[bytes]], list[StoredLabel]]:
    """200 subscribers from one seq on, ten concurrent writers of 30 labels each: what each subscriber got, and
    the labels written."""
    writer = server.labeler.writer
    head = (await writer.write_one(LabelRequest(uri=subject("many", 0), val="spam"))).seq
    clients = await asyncio.gather(*(connect(url(server, head), proxy=None, compression=None) for _ in range(200)))
    try:
        await until(lambda: len(hub_of(server).subscribers) == 200)

        async def burst(n: int) -> None:
            for i in range(10):
                await writer.write(requests(f"w{n}x", 3, start=i * 3))

        async def read_all(ws: ClientConnection) -> list[bytes]:
            out = []
            for _ in range(300):
                data = await ws.recv()
                assert isinstance(data, bytes)
                out.append(data)
            return out

        readers = [asyncio.create_task(read_all(ws)) for ws in clients]
        await asyncio.gather(*(burst(n) for n in range(10)))
        streams = await asyncio.gather(*readers)
    finally:
        await asyncio.gather(*(ws.close() for ws in clients))
    expected = await server.labeler.store.after(head, 1000)
    assert len(expected) == 300
    return streams, expected


async def test_a_live_sender_stuck_on_a_reader_that_stopped_is_cut_off_by_the_stall_check(make_settings: Any) -> None:
    """The buffer is large, so overflow never triggers: only the hub's stall check (a sender busy for longer than
    `stall_after`) can end this connection. The subscriber then leaves the hub, so nothing is held for it."""
    service = Labeler(make_settings(subscriber_buffer=200_000, writer_max_batch=500))
    await service.start()
    try:
        async with serve_labeler(service) as live:
            hub = hub_of(live)
            hub.stall_after, hub.poll_interval = 0.5, 0.1
            sock = small_receive_buffer_socket(live, 4096)
            async with connect(url(live), sock=sock, proxy=None, compression=None, max_queue=1):
                await until(lambda: len(hub.subscribers) == 1)
                (sub,) = hub.subscribers
                written = 0
                # Fill the socket buffers until the sender blocks (long subjects make big frames), then stop writing.
                while not (0.0 < sub.busy_since < asyncio.get_running_loop().time() - 0.2) and written < 20_000:
                    rows = await service.writer.write(
                        [
                            LabelRequest(uri=f"{subject('stall', written + i)}{'x' * 1500}", val="spam")
                            for i in range(50)
                        ]
                    )
                    await fanned_out(hub, rows[-1].seq)
                    written += len(rows)
                assert not sub.too_slow, "premise: the buffer never overflowed"
                # The subscriber leaves the hub first; the connection count drops once the handler's error-frame send
                # and close (each bounded at 5 s in subscribe_labels) give up on the stuck socket.
                await until(lambda: not hub.subscribers and hub.slots.in_use == 0)
    finally:
        await service.aclose()


# --- how frames reach the wire (labeler.xrpc.websocket) ------------------------------------------------------


async def test_a_live_reader_that_pauses_gets_every_frame_in_order_across_direct_and_queued_writes(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Live frames go straight to the socket while it takes them and are queued once its buffer is full; a reader
    that stops for a while and then reads on must still get every frame once, in seq order, and the connection
    must go back to direct writes afterwards. On the way, the socket takes part of a batch at least once, and the
    rest must follow through the transport."""
    rests: list[int] = []
    original_write_rest = TransportFrameSink.write_rest

    def write_rest(self: TransportFrameSink, data: bytes) -> None:
        rests.append(len(data))
        original_write_rest(self, data)

    monkeypatch.setattr(TransportFrameSink, "write_rest", write_rest)
    service = Labeler(make_settings(subscriber_buffer=20_000, writer_max_batch=100))
    await service.start()
    queued_peak = 0
    try:
        async with serve_labeler(service) as live:
            hub = hub_of(live)
            sock = small_receive_buffer_socket(live, 4096)
            async with connect(url(live), sock=sock, proxy=None, compression=None, max_queue=1) as ws:
                await until(lambda: len(hub.subscribers) == 1)
                (sub,) = hub.subscribers
                await until(lambda: sub.direct is not None)
                assert isinstance(sub.direct, TransportFrameSink)
                written: list[int] = []
                while queued_peak == 0 or len(written) < 3000:  # the reader is not reading: the queue must fill
                    rows = await service.writer.write(
                        [
                            LabelRequest(uri=f"{subject('pause', len(written) + i)}{'x' * 500}", val="spam")
                            for i in range(100)
                        ]
                    )
                    await fanned_out(hub, rows[-1].seq)
                    written += [row.seq for row in rows]
                    queued_peak = max(queued_peak, len(sub.frames))
                    assert len(written) < 19_000, "the socket buffers cannot hold this much"
                assert not sub.too_slow
                assert await recv_until(ws, written[-1]) == written
                await until(lambda: not sub.frames and sub.direct is not None)  # direct again
                after = await service.writer.write_one(LabelRequest(uri=subject("resumed", 0), val="spam"))
                assert await recv_until(ws, after.seq) == [after.seq]
    finally:
        await service.aclose()
    assert queued_peak > 0
    assert rests, "a direct write that the socket took only part of"


async def test_no_direct_write_follows_a_close_frame(labeler: Labeler) -> None:
    """uvicorn sends a close frame and keeps the transport open until the client answers or a timer fires: in that
    window the fan-out must not write past the close frame, though the transport is not closing."""
    async with serve_labeler(labeler) as live, subscribe(live) as ws:
        hub = hub_of(live)
        await until(lambda: len(hub.subscribers) == 1)
        (sub,) = hub.subscribers
        await until(lambda: sub.direct is not None)
        sink = sub.direct
        assert isinstance(sink, TransportFrameSink)
        assert sink.writable_fd() >= 0
        protocol = sink._protocol
        await protocol.send({"type": "websocket.close", "code": 1000})  # as when the app closes the WebSocket
        assert not protocol.transport.is_closing()
        assert sink.writable_fd() == -1
        assert sub.direct_fd(hub.head + 1) == -1
        with pytest.raises(ConnectionClosed):
            await ws.recv()


async def test_plain_asgi_websockets_carry_the_same_stream(labeler: Labeler) -> None:
    """Under an ASGI server without the `labeler.frames` extension the stream falls back to one ASGI message per
    frame: same frames, same order, backfill and live."""
    writer = labeler.writer
    backfill = await writer.write(requests("plain", 20))
    async with serve_labeler(labeler, ws="websockets-sansio") as live, subscribe(live, 0) as ws:
        hub = hub_of(live)
        got = await recv_until(ws, backfill[-1].seq)
        await until(lambda: len(hub.subscribers) == 1)
        (sub,) = hub.subscribers
        rows = await writer.write(requests("plain-live", 30))
        got += await recv_until(ws, rows[-1].seq)
        assert sub.direct is None, "no direct path: every live batch went through the connection's queue"
    assert got == [row.seq for row in [*backfill, *rows]]


async def test_over_tls_live_frames_go_through_the_transport(labeler: Labeler, tmp_path: Path) -> None:
    """Under uvicorn's own TLS the socket carries TLS records: frames written straight to it would break the
    stream, so the direct path stays off and every live frame goes through the transport."""
    cert, key = self_signed_certificate(tmp_path, "localhost")
    async with serve_labeler(labeler, ssl_certfile=str(cert), ssl_keyfile=str(key)) as live:
        context = ssl.create_default_context(cafile=str(cert))
        tls_url = f"wss://localhost:{live.port}{PATH}"
        async with connect(tls_url, ssl=context, proxy=None, compression=None) as ws:
            hub = hub_of(live)
            await until(lambda: len(hub.subscribers) == 1)
            (sub,) = hub.subscribers
            written: list[int] = []
            for n in range(5):
                written += [row.seq for row in await labeler.writer.write(requests(f"tls{n}x", 10))]
            assert await recv_until(ws, written[-1]) == written
            assert sub.direct is None


def self_signed_certificate(directory: Path, host: str) -> tuple[Path, Path]:
    """A certificate for `host` signed by its own P-256 key: (certificate file, key file), PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65_535, 65_536, 70_000])
def test_binary_frames_are_the_bytes_websockets_builds(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    expected = WsFrame(Opcode.BINARY, payload).serialize(mask=False, extensions=[])
    assert binary_frames([payload]) == expected


def test_consecutive_binary_frames_are_each_frame_in_turn() -> None:
    payloads = [b"", b"a" * 125, b"b" * 126, b"c" * 70_000]
    expected = b"".join(WsFrame(Opcode.BINARY, p).serialize(mask=False, extensions=[]) for p in payloads)
    assert binary_frames(payloads) == expected


async def test_a_subscriber_resetting_its_connection_mid_fan_out_harms_no_one(server: LiveServer) -> None:
    """Live frames are written from the writer's commit path: a connection reset under it must cost only that
    connection, never the writer or the other subscribers."""
    writer, hub = server.labeler.writer, hub_of(server)
    head = (await writer.write_one(LabelRequest(uri=subject("reset", 0), val="spam"))).seq
    sock = socket.create_connection(("127.0.0.1", server.port))
    async with subscribe(server, head) as steady, connect(url(server, head), sock=sock, proxy=None) as doomed:
        await until(lambda: len(hub.subscribers) == 2)
        written: list[int] = []
        for n in range(20):
            if n == 5:  # abort with RST, while frames keep coming
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                doomed.transport.abort()
            written += [row.seq for row in await writer.write(requests(f"reset{n}x", 10))]
        assert await recv_until(steady, written[-1]) == written
        await until(lambda: len(hub.subscribers) == 1)
