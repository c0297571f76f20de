"""One place that turns errors into the XRPC error body `{"error", "message"}`.

XrpcError subclasses render as themselves; Starlette's HTTP errors (unknown path, wrong method) keep their status
with an XRPC name; anything else is logged once and becomes a bare `InternalServerError`, never leaking internals
(`UnexpectedErrors`).
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labeler.protocol.errors import InternalServerError, RetryLater, XrpcError

log = logging.getLogger(__name__)

_HTTP_NAMES = {
    400: "InvalidRequest",
    401: "AuthRequired",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotSupported",
    413: "PayloadTooLarge",
    429: "RateLimitExceeded",
    501: "MethodNotImplemented",
}


def error_response(exc: XrpcError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The error's XRPC body and status, with `headers`; a `RetryLater` that knows when carries its Retry-After."""
    if isinstance(exc, RetryLater) and exc.retry_after is not None:
        headers = {**(headers or {}), "Retry-After": str(exc.retry_after)}
    return JSONResponse(exc.to_json(), status_code=exc.status, headers=headers)


async def handle_xrpc_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, XrpcError)
    return error_response(exc, {"WWW-Authenticate": 'Basic realm="labeler"'} if exc.status == 401 else None)


async def handle_http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    name = _HTTP_NAMES.get(exc.status_code, "InternalServerError" if exc.status_code >= 500 else "InvalidRequest")
    return JSONResponse({"error": name, "message": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


async def handle_client_disconnect(request: Request, _exc: Exception) -> Response:
    """A client closed its connection before its body was complete (a cancelled upload, a truncated request):
    nothing went wrong here, and anyone can do it, so INFO without a traceback. The response goes nowhere."""
    client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
    log.info("%s closed the connection before sending all of its %s %s body", client, request.method, request.url.path)
    return Response(status_code=400)


class UnexpectedErrors:
    """Middleware, outside all our others, for a bug: logged with its traceback, answered 500, and the connection
    closed after it (whatever the failure left half done belongs to no later request on that connection).

    Not a Starlette exception handler for `Exception`: Starlette runs that handler and then raises the exception on
    to the server, which logs the same traceback a second time. Here the exception ends with its one log line. One
    raised after the response began cannot be answered; the server closes that connection, as it must."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            request = Request(scope)
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            if not started:
                response = error_response(InternalServerError("internal error"), {"Connection": "close"})
                await response(scope, receive, send)
