"""uvicorn serving an ASGI app inside the caller's running event loop, until the block exits.

For a listener that runs beside other work in one process (a worker's metrics listener, the test suite's live
server). The caller owns the process's signals and decides when the listener stops, so uvicorn's own capture of
SIGINT/SIGTERM is off: it would take SIGTERM from the process for itself (`signal.signal`, replacing the caller's
handler), stop only the listener, and raise the signal again afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Generator
from typing import Any

import uvicorn

#: How long to wait for the server to start, and for it to finish after the block (seconds).
_START_S = 10.0
_STOP_S = 10.0
_POLL_S = 0.01


class _Embedded(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers alone (module docstring)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serving(app: Any, sock: socket.socket, **options: Any) -> AsyncIterator[None]:
    """Serve `app` on the bound socket `sock` (the caller's: a port clash is its error to report, not uvicorn's
    `sys.exit`) with uvicorn `options`; the block runs once the server accepts connections."""
    config = uvicorn.Config(app, lifespan="off", timeout_graceful_shutdown=1, **options)
    server = _Embedded(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(int(_START_S / _POLL_S)):
            if server.started or task.done():
                break
            await asyncio.sleep(_POLL_S)
        if task.done():
            task.result()  # its startup failed: raise that
        if not server.started:
            raise TimeoutError(f"uvicorn did not start within {_START_S} s")
        yield
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, _STOP_S)
