"""How the labeler is served by uvicorn: the protocol classes and the limits on connections, in one place for
`labeler serve`, the test suite and the benchmarks (`labeler.testing.serve_labeler`)."""

from __future__ import annotations

from typing import Any

from labeler.config import Settings
from labeler.xrpc.websocket import LabelerWebSocketProtocol


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config` / `uvicorn.run`, from the settings."""
    return {
        # uvicorn's sans-I/O WebSocket protocol plus subscribeLabels' frame sink (labeler.xrpc.websocket).
        "ws": LabelerWebSocketProtocol.configured(stall_timeout=settings.client_stall_timeout),
        "ws_max_size": 64 * 1024,
        "ws_ping_interval": 20,
        "ws_ping_timeout": 60,
        # Frames are encoded once and shared by every subscriber; per-message deflate would compress each frame
        # again for each subscriber that negotiates it, so it is off (clients fall back to plain frames).
        "ws_per_message_deflate": False,
    }
