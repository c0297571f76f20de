"""The metrics listener of `labeler worker` and `labeler ingest` (labeler.xrpc.metrics_listener): its option, its
socket bound before the command starts its work, and the listener around the command's run."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

import click

from labeler.config import Settings

if TYPE_CHECKING:
    from labeler.service import Labeler

F = TypeVar("F", bound=Callable[..., object])


def metrics_port_option(command: F) -> F:
    option = click.option(
        "--metrics-port",
        type=click.IntRange(0, 65535),
        help="Serve this process's /metrics on this port, on LABELER_METRICS_HOST (LABELER_METRICS_PORT; 0: none).",
    )
    return option(command)


def bind_metrics(settings: Settings) -> socket.socket | None:
    """The listener's socket when a port is set; a port that cannot be had is a one-line refusal, before anything
    else starts."""
    if not settings.metrics_port:
        return None
    from labeler.xrpc.metrics_listener import bind  # imported when used: see labeler.cli

    try:
        return bind(settings.metrics_host, settings.metrics_port)
    except OSError as exc:
        where = f"{settings.metrics_host}:{settings.metrics_port}"
        raise click.ClickException(
            f"cannot serve metrics on {where} (LABELER_METRICS_PORT): {exc.strerror or exc}"
        ) from None


def metrics_note(settings: Settings, sock: socket.socket | None) -> str:
    """Where the listener answers, for the command's start-up line ("" when there is none)."""
    if sock is None:
        return ""
    host = settings.metrics_host
    return f", metrics at http://{f'[{host}]' if ':' in host else host}:{sock.getsockname()[1]}/metrics"


@asynccontextmanager
async def metrics_served(labeler: Labeler, sock: socket.socket | None) -> AsyncIterator[None]:
    """The listener on `sock` while the block runs; nothing when there is no socket."""
    if sock is None:
        yield
        return
    from labeler.xrpc.metrics_listener import metrics_listener

    async with metrics_listener(labeler, sock):
        yield
