"""The metrics listener of a process that serves no API (`labeler worker`, `labeler ingest`): `GET /metrics` from
that process's own registry, and `GET /livez`; every other path is 404 and every other method 405.

Each such process counts its own work (fetches, hashes, matches, actions, its sources' events and lag) on its own
registry, which `serve`'s `/metrics` never sees; Prometheus scrapes each process here instead. It is uvicorn with
the labeler's own HTTP protocol (head and body deadlines, head size limits, a connection cap) rather than
prometheus_client's `start_http_server`, whose WSGI server answers the metrics on any path and method, and gives
every connection a thread with no deadline, so a few idle connections would hold it.

Off unless `LABELER_METRICS_PORT` (or `--metrics-port`) names a port: a process that opens no port by default
exposes nothing by surprise, and several workers on one host would otherwise clash on one default port.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from labeler.protocol.errors import XrpcError
from labeler.service import Labeler
from labeler.xrpc.errors import UnexpectedErrors, handle_http_error, handle_xrpc_error
from labeler.xrpc.in_loop import serving
from labeler.xrpc.server_options import uvicorn_options
from labeler.xrpc.well_known import live, metrics

#: Connections open at once: a Prometheus server or two, a health check, someone's curl.
MAX_CONNECTIONS: Final = 32


def metrics_app(labeler: Labeler) -> Starlette:
    """The listener's two routes, with the API's error shape for 404 and 405."""
    app = Starlette(
        routes=[Route("/metrics", metrics, methods=["GET"]), Route("/livez", live, methods=["GET"])],
        middleware=[Middleware(UnexpectedErrors)],
        exception_handlers={XrpcError: handle_xrpc_error, HTTPException: handle_http_error},
    )
    app.router.redirect_slashes = False  # `/metrics/` is not found, not redirected to wherever `Host` says
    app.state.labeler = labeler
    return app


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the process starts its work, so a taken port stops it at once with an
    `OSError` that names the cause (uvicorn binding it itself would `sys.exit` from inside the event loop)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


@contextlib.asynccontextmanager
async def metrics_listener(labeler: Labeler, sock: socket.socket) -> AsyncIterator[Starlette]:
    """Serve the listener's app (yielded) on `sock` (from `bind`) until the block exits; the socket is closed
    after."""
    options = {
        **uvicorn_options(labeler.settings, max_connections=MAX_CONNECTIONS),
        "access_log": False,  # a scrape every few seconds is not news
        "log_config": None,  # uvicorn's loggers go through ours (labeler.logs)
        "log_level": labeler.settings.log_level,
    }
    app = metrics_app(labeler)
    try:
        async with serving(app, sock, **options):
            yield app
    finally:
        sock.close()
