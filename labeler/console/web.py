"""What every console page shares: templates, the error page, form bodies, and the security headers.

Handlers raise `ConsoleError` (a status and a sentence for the person) or `Redirect`; `page` turns both into
responses, so a refused request gets a readable page with the same headers as any other.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labeler.protocol.errors import XrpcError
from labeler.protocol.storable import Unstorable, check_text

HERE: Final = Path(__file__).resolve().parent
TEMPLATES: Final = Jinja2Templates(directory=HERE / "templates")  # autoescaping on (Starlette's default)
STATIC_DIR: Final = HERE / "static"
MAX_FORM_BYTES: Final = 16 * 1024
_MAX_FIELDS: Final = 64  # the queue's bulk form: a checkbox per shown item (50) and its own fields

#: No inline script or style, nothing from elsewhere, no framing, forms only to ourselves.
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: Final = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),  # pages show evidence and images: nothing goes to a disk cache
]


class ConsoleError(Exception):
    """A refusal: `message` for the person, and `details` (lines) when there is a list to show, such as a refused
    file's bad rows."""

    def __init__(
        self, status: int, message: str, *, headers: dict[str, str] | None = None, details: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.details = details or []


class Redirect(Exception):  # a control-flow signal, not a failure
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


Handler = Callable[[Request], Awaitable[Response]]


def page(handler: Handler) -> Handler:
    """Render ConsoleError (and the shared parsers' XrpcError) as the error page, Redirect as 303 See Other."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except Redirect as redirect:
            return RedirectResponse(redirect.url, status_code=303)
        except ConsoleError as error:
            context = {"message": error.message, "details": error.details}
            return render(request, "error.html", context, status=error.status, headers=error.headers)
        except XrpcError as error:
            return render(request, "error.html", {"message": error.message}, status=error.status)

    return wrapped


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    return TEMPLATES.TemplateResponse(request, name, context or {}, status_code=status, headers=headers)


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body, at most 16 KiB and 64 fields, each name once, in UTF-8."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if request.method != "POST" or content_type != "application/x-www-form-urlencoded":
        raise ConsoleError(415, "send the form as application/x-www-form-urlencoded")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise ConsoleError(413, f"the form is larger than {MAX_FORM_BYTES} bytes")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=_MAX_FIELDS, errors="strict")
    except ValueError:  # UnicodeDecodeError included
        raise ConsoleError(400, "the form is not valid UTF-8 url-encoding") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise ConsoleError(400, f"the form field {name[:40]!r} is repeated")
        fields[form_text(name, "a form field's name")] = form_text(value, f"the form field {name[:40]!r}")
    return fields


def query_text(request: Request, name: str) -> str:
    """The query parameter `name`, stripped ("" when absent), refused when it is not storable text: a page looks
    it up in the database, and PostgreSQL refuses a NUL in any text parameter."""
    return form_text(request.query_params.get(name, "").strip(), f"the parameter {name!r}")


def form_text(value: str, what: str) -> str:
    """`value` if it is storable text (no NUL, no lone surrogate), else ConsoleError 400 naming `what`."""
    try:
        return check_text(value, what)
    except Unstorable as exc:
        raise ConsoleError(400, str(exc)) from None


class SecurityHeaders:
    """ASGI middleware for the console's mount: adds SECURITY_HEADERS to every response it did not set them on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in SECURITY_HEADERS if name not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)
