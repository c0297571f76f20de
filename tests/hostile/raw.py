"""Raw HTTP over loopback sockets, for inputs no HTTP client library would send: trickled, endless, pipelined or
truncated requests. Nothing here is timed: `until_closed` waits for the server with a generous safety net."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

from labeler.testing import LiveServer

#: The safety net for "the server closes this connection": far above any limit under test, never the assertion.
WAIT: Final = 30


@contextlib.asynccontextmanager
async def connection(server: LiveServer) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closing)."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := await asyncio.wait_for(reader.read(65536), WAIT):
            data += chunk
    return data


async def send_forever(writer: asyncio.StreamWriter, chunk: bytes, pause: float = 0.0) -> None:
    """Keep sending `chunk` until the server closes the connection."""
    with contextlib.suppress(ConnectionError):
        while True:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(pause)
    writer.transport.abort()


def status(answer: bytes) -> int:
    """The status code of the first response in `answer`."""
    return int(answer.split(b" ", 2)[1])
