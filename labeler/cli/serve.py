"""`labeler serve`: run the HTTP/WebSocket server (migrating the database; a dev key for our own did:web if none)."""

from __future__ import annotations

import gc
import logging
import signal
from types import FrameType

import click

from labeler.cli._common import settings_or_exit
from labeler.cli._label_key import refuse_unpublished_dev_key
from labeler.logs import configure_logging

# On SIGTERM uvicorn stops accepting, closes WebSockets (1012) and waits this long for in-flight requests before
# cancelling them; the lifespan then drains the label writer. Keep it under the orchestrator's kill timeout.
GRACEFUL_SHUTDOWN_SECONDS = 20


@click.command()
@click.option("--host", help="Interface to bind (LABELER_HOST, default 127.0.0.1).")
@click.option("--port", type=int, help="Port to bind (LABELER_PORT, default 8080).")
def serve(host: str | None, port: int | None) -> None:
    """Serve queryLabels, subscribeLabels, emitEvent and the DID document."""
    # The server and everything it serves are imported here, not when the CLI starts (labeler.cli).
    import uvicorn

    from labeler.single_process import SingleProcessError, check_free
    from labeler.xrpc.app import create_app
    from labeler.xrpc.server_options import raise_fd_limit, uvicorn_options

    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = settings_or_exit(**overrides)
    refuse_unpublished_dev_key(settings)
    configure_logging(settings.log_level, settings.log_format)
    try:
        check_free(settings.database_url)  # a clear one-line refusal instead of a startup traceback
    except SingleProcessError as exc:
        raise click.ClickException(str(exc)) from None
    app = create_app(settings)
    database = _safe_url(settings.database_url)
    if settings.log_format == "json":
        logging.getLogger("labeler.serve").info(
            "labeler %s at %s",
            settings.did,
            settings.public_url,
            extra={"did": settings.did, "public_url": settings.public_url, "database": database},
        )
    else:
        click.echo(f"labeler {settings.did} at {settings.public_url} (database {database})")
    # uvicorn handles SIGTERM (the graceful shutdown above), then re-raises it once done, so the process would end
    # "killed by SIGTERM" (143). A finished graceful shutdown is a clean exit: the re-raise lands here, exit 0.
    signal.signal(signal.SIGTERM, _after_graceful_shutdown)
    # The SDK's models and everything else imported so far live for the whole process: keep the cyclic GC from
    # rescanning them on every collection on the write path (measured: ~15% more labels per CPU-second).
    gc.freeze()
    raise_fd_limit()  # before the options: the connection cap stays below the limit in force
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # configure_logging routes uvicorn's loggers through our handler
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        **uvicorn_options(settings),  # protocols and connection limits (labeler.xrpc.server_options)
        proxy_headers=True,
    )


def _after_graceful_shutdown(_signum: int, _frame: FrameType | None) -> None:
    """uvicorn owns SIGTERM while it serves; this only receives its re-raise after the shutdown completed."""


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
