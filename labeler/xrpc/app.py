"""The Starlette application: routes, error handlers, body limit, and the labeler's lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute

from labeler.admin.emit_event import emit_event
from labeler.admin.moderation import query_events, query_statuses
from labeler.admin.review import review_routes
from labeler.config import Settings
from labeler.console import console_mount
from labeler.console.auth import ConsoleAuth
from labeler.console.bank_upload import BODY_LIMIT, IMPORT_PATH
from labeler.console.imports import BankImports
from labeler.protocol.errors import MethodNotImplemented, MethodNotSupported, XrpcError
from labeler.service import Labeler
from labeler.xrpc.create_report import create_report
from labeler.xrpc.errors import UnexpectedErrors, handle_client_disconnect, handle_http_error, handle_xrpc_error
from labeler.xrpc.failed_logins import FailureLimiter
from labeler.xrpc.limits import BodyLimitMiddleware
from labeler.xrpc.query_labels import query_labels
from labeler.xrpc.subscribe_labels import subscribe_labels
from labeler.xrpc.upload_api import upload_body_limits, upload_routes
from labeler.xrpc.well_known import did_json, health, live, metrics


async def not_implemented(request: Request) -> Response:
    nsid = request.path_params["nsid"]
    if any(isinstance(r, Route) and r.path == f"/xrpc/{nsid}" for r in request.app.routes):
        raise MethodNotSupported(f"{request.method} is not supported by {nsid}")
    raise MethodNotImplemented(f"method not implemented: {nsid}")


async def upgrade_required(_request: Request) -> Response:
    return JSONResponse(
        {"error": "InvalidRequest", "message": "subscribeLabels is a WebSocket endpoint; send an Upgrade request"},
        status_code=426,
        headers={"Upgrade": "websocket"},
    )


async def index(request: Request) -> Response:
    labeler: Labeler = request.app.state.labeler
    return PlainTextResponse(
        f"atproto-hma-labeler\nDID: {labeler.settings.did}\n"
        "XRPC: com.atproto.label.queryLabels, com.atproto.label.subscribeLabels\n"
    )


def create_app(settings: Settings, *, labeler: Labeler | None = None) -> Starlette:
    """Build the app; the Labeler starts and stops with the app's lifespan unless one is passed in running."""
    owned = labeler is None
    service = labeler or Labeler(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if owned:
            # Pipeline workers and the configured firehose/Jetstream sources run in-process with `serve`, and the
            # hashing processes start now when workers or the upload API will need them.
            await service.start(workers=settings.workers, sources=True, hashing=bool(settings.upload_tokens))
        try:
            yield
        finally:
            await console_imports.aclose()  # before the database goes: its committed batches stay
            if owned:
                await service.aclose()

    console_imports = BankImports(service.pipeline.banks)
    routes = [
        Route("/", index),
        Route("/xrpc/_health", health),
        Route("/livez", live),
        Route("/metrics", metrics),
        Route("/.well-known/did.json", did_json),
        Route("/xrpc/com.atproto.label.queryLabels", query_labels),
        WebSocketRoute("/xrpc/com.atproto.label.subscribeLabels", subscribe_labels),
        Route("/xrpc/com.atproto.label.subscribeLabels", upgrade_required),
        Route("/xrpc/tools.ozone.moderation.emitEvent", emit_event, methods=["POST"]),
        Route("/xrpc/com.atproto.moderation.createReport", create_report, methods=["POST"]),
        Route("/xrpc/tools.ozone.moderation.queryStatuses", query_statuses),
        Route("/xrpc/tools.ozone.moderation.queryEvents", query_events),
        Route("/xrpc/{nsid}", not_implemented, methods=["GET", "POST"]),
        *upload_routes(),
        *review_routes(),
        console_mount(),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(UnexpectedErrors),  # first: outside every other middleware
            Middleware(
                BodyLimitMiddleware,
                max_bytes=settings.max_body_bytes,
                route_limits={**upload_body_limits(settings), IMPORT_PATH: BODY_LIMIT},
            ),
        ],
        exception_handlers={
            XrpcError: handle_xrpc_error,
            HTTPException: handle_http_error,
            ClientDisconnect: handle_client_disconnect,
        },
        lifespan=lifespan,
    )
    app.state.labeler = service
    # Failed password attempts, shared by every route that takes a guessable secret (the console's sign-in too).
    app.state.failed_logins = FailureLimiter.for_service(service)
    app.state.console_auth = ConsoleAuth(service, app.state.failed_logins)
    app.state.console_imports = console_imports
    return app
