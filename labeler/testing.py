"""Serve a started Labeler on real uvicorn on a free loopback port, inside the caller's event loop: for the test
suite and the benchmarks (as Starlette ships its TestClient).

Running in the caller's own loop (not a thread or a child process) lets the caller drive the writer directly
while clients talk HTTP and WebSocket to the same process. WebSockets are served as `labeler serve` serves them.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette

from labeler.service import Labeler
from labeler.xrpc.app import create_app
from labeler.xrpc.in_loop import serving
from labeler.xrpc.server_options import uvicorn_options


@dataclass
class LiveServer:
    """The labeler on real uvicorn in the caller's event loop."""

    labeler: Labeler
    port: int
    app: Starlette  # the labeler's app (unwrapped): its `state` holds the console's imports and the limiters

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def serve_labeler(
    service: Labeler,
    *,
    send_buffer: int | None = None,
    wrap: Callable[[Any], Any] | None = None,
    port: int = 0,
    **options: Any,
) -> AsyncIterator[LiveServer]:
    """Serve an already-started Labeler until the block exits.

    `send_buffer` fixes the kernel send buffer of every accepted connection (no autotuning, which lets the server
    put megabytes into a loopback socket before its own flow control starts). `wrap` wraps the ASGI app (a timer,
    say). `port` 0 picks a free one; a given port serves again where a stopped server was (a restart). The listen
    backlog is large enough for a thousand clients connecting at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if send_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)  # accepted sockets inherit it
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    starlette = create_app(service.settings, labeler=service)
    app: Any = starlette if wrap is None else wrap(starlette)
    options.setdefault("log_level", "warning")
    options.setdefault("backlog", 4096)
    try:
        async with serving(app, sock, **{**uvicorn_options(service.settings), **options}):
            yield LiveServer(service, port, starlette)
    finally:
        sock.close()
