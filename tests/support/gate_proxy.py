"""A TCP proxy in front of a real server, for fault tests: it forwards, refuses connections (the service is down),
or holds requests without forwarding them (a request in flight when the caller dies).

It runs in the test's event loop. `forwarded` and `held` count HTTP requests whose first line contains `marker`
(e.g. an XRPC method), seen on the way to the server or kept back, so a test can tell how often the server was
really asked.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

Mode = Literal["forward", "down", "hold"]


class GateProxy:
    def __init__(self, target_host: str, target_port: int, *, marker: bytes = b"") -> None:
        self.target = (target_host, target_port)
        self.marker = marker
        self.mode: Mode = "forward"
        self.forwarded = 0
        self.held = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> GateProxy:
        await self._listen()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._close()

    async def set(self, mode: Mode) -> None:
        """`down` closes the listening socket (connections are refused); leaving `down` listens again."""
        if mode == "down" and self._server is not None:
            await self._close()
        elif mode != "down" and self._server is None:
            await self._listen()
        self.mode = mode

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):  # every connection ends: its tasks see EOF and return
            writer.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream: asyncio.StreamWriter | None = None
        self._writers.add(client_writer)
        try:
            server_reader, upstream = await asyncio.open_connection(*self.target)
            self._writers.add(upstream)
            back = asyncio.create_task(self._pipe(server_reader, client_writer))
            self._tasks.add(back)
            try:
                while data := await client_reader.read(65536):
                    requests = sum(1 for line in data.split(b"\r\n") if self.marker in line and b" HTTP/1" in line)
                    if self.mode == "hold":
                        self.held += requests
                        continue  # kept back: the server never sees it
                    self.forwarded += requests
                    upstream.write(data)
                    await upstream.drain()
            finally:
                upstream.close()
                await back
                self._tasks.discard(back)
        except (ConnectionError, OSError):
            pass
        finally:
            for writer in (client_writer, upstream):
                if writer is not None:
                    writer.close()
                    self._writers.discard(writer)
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
