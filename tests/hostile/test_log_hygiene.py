"""What anyone can make the server log (issue #15, item 19): a truncated body logged an ERROR `ClientDisconnect`
with a traceback, and on PostgreSQL a bad request pipelined behind a good one logged `RuntimeError … TCPTransport
closed`. Both are INFO at most, without a traceback, on SQLite and PostgreSQL. A real failure (500) still logs
its traceback, and its connection is closed after the response, which says so."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Iterator

import pytest

from labeler.testing import LiveServer

from .callers import ADMIN, UPLOAD_TOKEN
from .raw import WAIT, connection, status, until_closed

BASIC = "Basic " + base64.b64encode(":".join(ADMIN).encode()).decode()
EMIT_BODY = json.dumps(
    {
        "event": {"$type": "tools.ozone.moderation.defs#modEventLabel", "createLabelVals": ["spam"]},
        "subject": {"$type": "com.atproto.admin.defs#repoRef", "did": "did:plc:pipelinedpipelinedpipeli"},
    }
).encode()


def post(
    path: str, authorization: str, body: bytes, length: int | None = None, kind: str = "application/json"
) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {authorization}\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
    )
    return head.encode() + body


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog at INFO, uvicorn's own loggers included (uvicorn's logging config keeps them from propagating)."""
    caplog.set_level(logging.INFO)
    uvicorn = logging.getLogger("uvicorn")
    uvicorn.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        uvicorn.removeHandler(caplog.handler)


def loud(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Records above INFO, or with a traceback."""
    return [
        f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records if r.levelno > logging.INFO or r.exc_info
    ]


async def logged(caplog: pytest.LogCaptureFixture, logger: str, count: int) -> None:
    """Wait until `logger` has logged `count` records (the server handles a closed connection in its own time)."""
    for _ in range(WAIT * 20):
        if sum(r.name == logger for r in caplog.records) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{logger} logged {[r.getMessage() for r in caplog.records]}")


@pytest.mark.parametrize(
    "request_start",
    [
        post("/xrpc/tools.ozone.moderation.emitEvent", BASIC, EMIT_BODY[:20], length=len(EMIT_BODY)),
        post("/api/v1/match", f"Bearer {UPLOAD_TOKEN}", b'{"hash": "ff', length=1000),
        post("/api/v1/hash", f"Bearer {UPLOAD_TOKEN}", b"\xff\xd8\xff\xe0" + b"\0" * 100, 100_000, "image/jpeg"),
    ],
    ids=["emitEvent", "match", "hash"],
)
async def test_a_truncated_body_is_logged_at_info_without_a_traceback(
    server: LiveServer, logs: pytest.LogCaptureFixture, request_start: bytes
) -> None:
    caplog = logs
    async with connection(server) as (_reader, writer):
        writer.write(request_start)
        await writer.drain()
    await logged(caplog, "labeler.xrpc.errors", 1)
    assert "closed the connection before sending all of its POST" in caplog.text
    assert not loud(caplog)


@pytest.mark.parametrize(
    "good",
    [
        post("/xrpc/tools.ozone.moderation.emitEvent", BASIC, EMIT_BODY),
        b"GET /xrpc/com.atproto.label.queryLabels?uriPatterns=* HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["emitEvent", "queryLabels"],
)
async def test_a_bad_request_pipelined_behind_a_good_one_is_answered_after_it_quietly(
    server: LiveServer, logs: pytest.LogCaptureFixture, good: bytes
) -> None:
    """The 400 used to be written at once, in place of the good request's response (uvicorn's WARNING "Invalid
    HTTP request received"), and the good request then wrote to a closed transport."""
    caplog = logs
    async with connection(server) as (reader, writer):
        writer.write(good + b"GARBAGE\x00\r\n\r\n")
        answer = await until_closed(reader)
    first, _, second = answer.partition(b"HTTP/1.1 400 ")
    assert status(first) == 200, answer
    assert second and b"connection: close" in second and b'"error": "InvalidRequest"' in second, answer
    assert "refused a request" in caplog.text
    assert not loud(caplog)


async def test_after_a_500_the_connection_is_closed_and_says_so(
    server: LiveServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> bytes:
        raise RuntimeError("a bug")

    monkeypatch.setattr(server.labeler.metrics, "render", broken)
    async with connection(server) as (reader, writer):
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await until_closed(reader)
    assert status(answer) == 500 and b"connection: close" in answer.lower(), answer
    assert answer.count(b"HTTP/1.1 ") == 1  # the pipelined /livez is not served on that connection
    # One traceback, ours (with the method and path), not a second one from the server for the same error.
    tracebacks = [r.getMessage() for r in caplog.records if r.exc_info]
    assert tracebacks == ["unhandled error on GET /metrics"], tracebacks
