"""Connections that cost the server without sending a request: idle, slow or oversized heads, too many at once
(issue #15, items 14 and 15), each sent as it came, over loopback to real uvicorn with the labeler's protocol.

Nothing here is timed: a test waits (with a generous safety timeout) for the server to answer or close, and checks
what it said. The connection layer is below the database, so these run on SQLite only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import resource
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.serve_process import ServeProcess

from labeler.config import Settings
from labeler.keys import Keyring
from labeler.service import Labeler
from labeler.testing import LiveServer, serve_labeler
from labeler.xrpc.http_protocol import MAX_HEAD_BYTES, MAX_TARGET_BYTES, MAX_UPGRADE_TARGET_BYTES
from labeler.xrpc.server_options import FD_RESERVE

from .callers import ADMIN
from .raw import WAIT, connection, send_forever, status, until_closed

CAP = 6
UPGRADE = (
    b"Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
SUBSCRIBE = b"/xrpc/com.atproto.label.subscribeLabels"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'labeler.db'}"


@pytest.fixture
def settings(make_settings: Any) -> Settings:
    # Short deadlines so that the tests need not wait long for them (what is asserted is the closing, not when).
    return make_settings(
        header_timeout=1.0, body_timeout=1.0, keepalive_timeout=1.0, max_connections=CAP, client_stall_timeout=1.0
    )


async def test_a_connection_that_sends_nothing_is_closed(server: LiveServer) -> None:
    async with connection(server) as (reader, _writer):
        assert await until_closed(reader) == b""


async def test_a_head_sent_a_byte_at_a_time_is_answered_408_and_closed(server: LiveServer) -> None:
    """Slowloris: every byte is within any idle timeout, the head is never complete."""
    async with connection(server) as (reader, writer):
        writer.write(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        trickle = asyncio.create_task(send_forever(writer, b"X", pause=0.05))
        answer = await until_closed(reader)
        trickle.cancel()
    assert status(answer) == 408, answer
    assert b"connection: close" in answer and b'"error": "InvalidRequest"' in answer


@pytest.mark.parametrize(
    "framing", [b"Content-Length: 2000\r\n", b"Transfer-Encoding: chunked\r\n"], ids=["length", "chunked"]
)
async def test_a_body_sent_a_byte_at_a_time_is_answered_408_and_closed(server: LiveServer, framing: bytes) -> None:
    """Slowloris on the body: a complete head, then a body that never ends; the (authorized) handler waits on it
    meanwhile. (A handler that answers without reading, as an unauthorized one does, closes the connection.)"""
    async with connection(server) as (reader, writer):
        writer.write(
            b"POST /xrpc/tools.ozone.moderation.emitEvent HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Basic " + base64.b64encode(":".join(ADMIN).encode()) + b"\r\n"
            b"Content-Type: application/json\r\n" + framing + b"\r\n" + (b"7d0\r\n" if b"chunked" in framing else b"")
        )
        trickle = asyncio.create_task(send_forever(writer, b" ", pause=0.05))
        answer = await until_closed(reader)
        trickle.cancel()
    assert status(answer) == 408, answer
    assert b"request body did not arrive" in answer and b"connection: close" in answer


async def test_a_keep_alive_connection_is_closed_when_idle_and_when_trickling_after_a_response(
    server: LiveServer,
) -> None:
    for trickle_after in (False, True):
        async with connection(server) as (reader, writer):
            writer.write(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            first = await reader.readuntil(b"\r\n\r\n")
            assert status(first) == 200 and b"connection: close" not in first
            trickle = None
            if trickle_after:
                writer.write(b"GET /livez HTTP/1.1\r\n")
                trickle = asyncio.create_task(send_forever(writer, b"X", pause=0.05))
            rest = await until_closed(reader)
            if trickle is not None:
                trickle.cancel()
                assert status(rest[rest.index(b"HTTP/1.1 ") :]) == 408, rest
            else:
                assert b"HTTP/1.1 " not in rest


async def test_connections_past_the_cap_get_503_and_idle_ones_are_released(server: LiveServer) -> None:
    """1,124 idle connections once took all 1,024 descriptors and /livez failed while they were held."""
    async with contextlib.AsyncExitStack() as stack:
        idle = [await stack.enter_async_context(connection(server)) for _ in range(CAP)]
        async with connection(server) as (reader, writer):
            writer.write(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            refused = await until_closed(reader)
        assert status(refused) == 503 and b"retry-after: 1" in refused, refused
        assert b'"error": "ServiceUnavailable"' in refused
        for reader, _writer in idle:  # never sent anything: closed by the head deadline
            assert await until_closed(reader) == b""
    for _ in range(WAIT * 10):  # the server may see the last close a moment after we do
        async with connection(server) as (reader, writer):
            writer.write(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = await until_closed(reader)
        if status(answer) != 503:
            break
        await asyncio.sleep(0.1)
    assert status(answer) == 200, answer


@pytest.mark.parametrize(
    ("head", "flood", "expected"),
    [
        (b"GET /", b"a" * 65536, 414),  # a request line of 64 MiB and more
        (b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ", b"a" * 65536, 431),  # 8 MiB headers
        (b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"X-Many: 1\r\n" * 1000, 431),  # header fields without end
        (b"GET " + SUBSCRIBE + b"?cursor=", b"1" * 65536, 414),  # a WebSocket upgrade's endless request line
    ],
    ids=["request-line", "header-value", "header-count", "websocket-request-line"],
)
async def test_an_endless_head_is_refused_before_it_is_read_whole(
    server: LiveServer, head: bytes, flood: bytes, expected: int
) -> None:
    """The answer comes while the client is still sending, and the rest is never read: the server closes the
    connection with the client's bytes unread, which resets it (the client stops at 64 MiB either way)."""
    async with connection(server) as (reader, writer):
        writer.write(head)

        async def flood_64_mib() -> int:
            sent = 0
            with contextlib.suppress(ConnectionError):
                while sent < 64 * 1024 * 1024:
                    writer.write(flood)
                    await writer.drain()
                    sent += len(flood)
            return sent

        sending = asyncio.create_task(flood_64_mib())
        answer = await until_closed(reader)
        sent = await asyncio.wait_for(sending, WAIT)
    assert status(answer) == expected, answer[:300]
    assert sent < 64 * 1024 * 1024  # cut off while sending


LONG_UPGRADE = b"GET " + SUBSCRIBE + b"?cursor=" + b"1" * (MAX_UPGRADE_TARGET_BYTES - len(SUBSCRIBE) - 7)
FIVE_8_KB_HEADERS = b"".join(b"X-%d: %s\r\n" % (n, b"v" * 8000) for n in range(5))


@pytest.mark.parametrize(
    ("request_head", "expected"),
    [
        (b"GET /?" + b"q" * MAX_TARGET_BYTES + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + FIVE_8_KB_HEADERS + b"\r\n", 431),
        # The WebSocket handshake parser takes request lines up to 8,192 bytes; one past it never got an answer.
        (LONG_UPGRADE + b" HTTP/1.1\r\n" + UPGRADE, 414),
        (b"GET " + SUBSCRIBE + b" HTTP/1.1\r\nX-Big: " + b"b" * 8190 + b"\r\n" + UPGRADE, 431),
    ],
    ids=["target", "101-headers", "40-kb-of-headers", "websocket-8193-byte-request-line", "websocket-header-line"],
)
async def test_a_complete_head_over_a_limit_is_refused(server: LiveServer, request_head: bytes, expected: int) -> None:
    async with connection(server) as (reader, writer):
        writer.write(request_head)
        answer = await until_closed(reader)
    assert status(answer) == expected, answer[:300]
    assert b"connection: close" in answer


async def test_heads_within_the_limits_are_served(server: LiveServer) -> None:
    """A long queryLabels target, a WebSocket upgrade at its longest, and a head just under the size limit."""
    query = b"/xrpc/com.atproto.label.queryLabels?uriPatterns=" + b"did:plc:a*&uriPatterns=" * 600 + b"x"
    assert len(query) < MAX_TARGET_BYTES
    padding = b"X-Pad: " + b"p" * (MAX_HEAD_BYTES - len(query) - 200) + b"\r\n"
    async with connection(server) as (reader, writer):
        writer.write(b"GET " + query + b" HTTP/1.1\r\nHost: x\r\n" + padding + b"Connection: close\r\n\r\n")
        answer = await until_closed(reader)
    assert status(answer) == 400 and b"uriPatterns" in answer, answer[:300]  # the app's own limit on patterns
    longest = SUBSCRIBE + b"?cursor=" + b"0" * (MAX_UPGRADE_TARGET_BYTES - len(SUBSCRIBE) - 8)
    async with connection(server) as (reader, writer):
        writer.write(b"GET " + longest + b" HTTP/1.1\r\n" + UPGRADE)
        assert status(await reader.readuntil(b"\r\n\r\n")) == 101


async def test_a_client_that_reads_none_of_its_responses_is_cut_off(labeler: Labeler) -> None:
    """Pipelined requests whose responses are never read: uvicorn waits to write forever, holding the connection,
    unless the stall guard resets it (kernel buffers kept small, so they fill at once)."""
    async with serve_labeler(labeler, send_buffer=4096) as live:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", live.port))
        _reader, writer = await asyncio.open_connection(sock=sock)
        try:
            await asyncio.wait_for(send_forever(writer, b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n" * 100), WAIT)
        finally:
            writer.close()


@pytest.fixture
def low_fd_limit() -> Iterator[int]:
    """This process's soft open-files limit lowered to 1,024 (as distributions start services) for its children."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 1024:
        pytest.skip(f"the hard open-files limit is {hard}: nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_serve_raises_its_open_files_limit_and_uses_these_limits(tmp_path: Path, low_fd_limit: int) -> None:
    Keyring.open(tmp_path / "keys").generate()  # the operator's key: serve makes none for a did:plc
    process = ServeProcess(
        "fd", f"sqlite:///{tmp_path / 'l.db'}", tmp_path, password="pw", did="did:plc:labelerfdlimittestaaa"
    )
    try:
        await process.start()
        assert process.proc is not None
        limits = await asyncio.to_thread(Path(f"/proc/{process.proc.pid}/limits").read_text)
        limits = limits.splitlines()
        soft = next(line.split()[3] for line in limits if line.startswith("Max open files"))
        expected = "unlimited" if low_fd_limit == resource.RLIM_INFINITY else str(low_fd_limit)
        assert soft == expected
        assert FD_RESERVE < 1024
        reader, writer = await asyncio.open_connection("127.0.0.1", process.port)
        try:
            writer.write(b"GET /?" + b"q" * (MAX_TARGET_BYTES + 1))
            assert status(await until_closed(reader)) == 414
        finally:
            writer.close()
    finally:
        await process.stop()
