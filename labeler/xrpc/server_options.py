"""How the labeler is served by uvicorn: the protocol classes and the limits on connections, in one place for
`labeler serve`, the test suite and the benchmarks (`labeler.testing.serve_labeler`)."""

from __future__ import annotations

import logging
import resource
from typing import Any, Final

from labeler.config import Settings
from labeler.xrpc.http_protocol import LabelerHttpProtocol
from labeler.xrpc.websocket import LabelerWebSocketProtocol

log = logging.getLogger(__name__)

#: File descriptors kept free of client connections: database connections, hashing processes' pipes, outbound
#: fetches, log and key files, the listening socket.
FD_RESERVE: Final = 256


def uvicorn_options(settings: Settings, *, max_connections: int | None = None) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config` / `uvicorn.run`, from the settings; `max_connections` lowers the
    connection cap below the settings' (a listener that needs few)."""
    cap = connection_cap(settings)
    return {
        # uvicorn's httptools protocol plus deadlines, size limits and a connection cap (labeler.xrpc.http_protocol).
        "http": LabelerHttpProtocol.configured(
            head_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            max_connections=cap if max_connections is None else min(cap, max_connections),
            stall_timeout=settings.client_stall_timeout,
        ),
        "timeout_keep_alive": settings.keepalive_timeout,
        # uvicorn's sans-I/O WebSocket protocol plus subscribeLabels' frame sink (labeler.xrpc.websocket).
        "ws": LabelerWebSocketProtocol.configured(stall_timeout=settings.client_stall_timeout),
        "ws_max_size": 64 * 1024,
        "ws_ping_interval": 20,
        "ws_ping_timeout": 60,
        # Frames are encoded once and shared by every subscriber; per-message deflate would compress each frame
        # again for each subscriber that negotiates it, so it is off (clients fall back to plain frames).
        "ws_per_message_deflate": False,
    }


def raise_fd_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (distributions start services at 1,024,
    which a thousand idle clients exhaust); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:  # e.g. above the kernel's nr_open
            log.warning("could not raise the open-files limit from %d to %d: %s", soft, wanted, exc)
    return soft


def connection_cap(settings: Settings) -> int:
    """`LABELER_MAX_CONNECTIONS`, lowered to leave `FD_RESERVE` descriptors free under the soft open-files limit."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return settings.max_connections
    room = max(soft - FD_RESERVE, 1)
    if room < settings.max_connections:
        log.warning(
            "LABELER_MAX_CONNECTIONS %d lowered to %d: the open-files limit is %d (raise it: ulimit -n)",
            settings.max_connections,
            room,
            soft,
        )
    return min(settings.max_connections, room)
