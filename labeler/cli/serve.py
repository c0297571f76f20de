"""`labeler serve`: run the HTTP/WebSocket server (migrating the database and creating a dev key if needed)."""

from __future__ import annotations

import logging

import click
import uvicorn

from labeler.cli._common import settings_or_exit
from labeler.xrpc.app import create_app


@click.command()
@click.option("--host", help="Interface to bind (LABELER_HOST, default 127.0.0.1).")
@click.option("--port", type=int, help="Port to bind (LABELER_PORT, default 8080).")
def serve(host: str | None, port: int | None) -> None:
    """Serve queryLabels, subscribeLabels, emitEvent and the DID document."""
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = settings_or_exit(**overrides)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    click.echo(f"labeler {settings.did} at {settings.public_url} (database {_safe_url(settings.database_url)})")
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        ws_max_size=64 * 1024,
        ws_ping_interval=20,
        ws_ping_timeout=60,
        proxy_headers=True,
    )


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
