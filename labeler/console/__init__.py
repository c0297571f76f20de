"""The moderator console at `/console/`: server-rendered pages (Jinja2) and one local script, mounted by `serve`.

Modules: `auth` (sign-in, session cookie, CSRF), `sessions` (the signed cookie), `passwords` (scrypt),
`moderators` (the operator's list of moderators), `throttle` (failed sign-ins), `queue` (the review queue in
priority order), `pages` (the pages), `image` (an item's image, fetched for the reviewer), `web` (templates,
forms, errors, security headers).
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from labeler.console import pages
from labeler.console.image import item_image
from labeler.console.web import STATIC_DIR, SecurityHeaders


def console_mount() -> Mount:
    return Mount(
        "/console",
        routes=[
            Route("/", pages.index),
            Route("/login", pages.login, methods=["GET", "POST"]),
            Route("/logout", pages.logout, methods=["POST"]),
            Route("/queue", pages.queue),
            Route("/items/{item_id}/decide", pages.decide, methods=["POST"]),
            Route("/items/{item_id}/image", item_image),
            Mount("/static", StaticFiles(directory=STATIC_DIR)),
        ],
        middleware=[Middleware(SecurityHeaders)],
    )
