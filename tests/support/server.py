"""Run any ASGI app under real uvicorn on 127.0.0.1 in a background thread, for network-level tests.

Usage (sync or async tests alike; the server has its own event loop in its own thread):

    with serve_in_thread(app) as server:
        httpx.get(f"{server.url}/path")
        websockets.connect(f"{server.ws_url}/xrpc/...")

The socket is bound before the server starts (port 0, so the OS picks a free port and nothing can take it in
between), the context manager returns only once uvicorn reports it is serving, and leaving it shuts the
server down and joins the thread. Pass `lifespan="on"` for apps whose startup must run.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

STARTUP_TIMEOUT = 10.0
SHUTDOWN_TIMEOUT = 10.0


@dataclass(frozen=True)
class RunningServer:
    """A started server: where to reach it, and the uvicorn `Server` for tests that need its state."""

    host: str
    port: int
    server: uvicorn.Server

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def localhost_url(self) -> str:
        """The same server by host *name*, for peers that refuse IP literals (devnet.md item 7)."""
        return f"http://localhost:{self.port}"


def free_port() -> int:
    """A loopback port free right now, for servers a test starts later (or restarts) on a fixed port.

    It is taken from below the kernel's ephemeral range: a port from inside it (what binding port 0 gives) can be
    handed meanwhile to any outgoing connection or port-0 server of the run, and the later bind then fails with
    "Address already in use" (seen under load)."""
    low = _ephemeral_low()
    start = max(1024, low - 12_000)
    for _ in range(200 if start < low else 0):
        port = random.randrange(start, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use: another
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # no room below it: any free port
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out for port 0 and outgoing connections (32768 where it is not told)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


@contextlib.contextmanager
def serve_in_thread(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    lifespan: str = "off",
    startup_timeout: float = STARTUP_TIMEOUT,
    **config: Any,
) -> Iterator[RunningServer]:
    """Serve `app` until the block exits. Extra keyword arguments go to `uvicorn.Config` (e.g. `ws=...`)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    config.setdefault("log_level", "warning")
    config.setdefault("timeout_graceful_shutdown", 2)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=bound_port, lifespan=lifespan, **config))
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # surfaced to the test thread below
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"uvicorn-{bound_port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if failure or not thread.is_alive():
                raise RuntimeError(f"uvicorn failed to start on {host}:{bound_port}") from (
                    failure[0] if failure else None
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"uvicorn did not start on {host}:{bound_port} within {startup_timeout}s")
            time.sleep(0.01)
        yield RunningServer(host, bound_port, server)
    finally:
        server.should_exit = True
        thread.join(SHUTDOWN_TIMEOUT)
        sock.close()
        if thread.is_alive():
            raise RuntimeError(f"uvicorn on {host}:{bound_port} did not shut down")
