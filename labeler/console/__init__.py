"""The moderator console at `/console/`: server-rendered pages (Jinja2) and one local script, mounted by `serve`.

Modules: `auth` (sign-in, session cookie, CSRF; failed sign-ins through `labeler.xrpc.failed_logins`),
`sessions` (the signed cookie), `passwords` (scrypt), `moderators` (the operator's list of moderators), `queue`
(the review queue in priority order), `pages` (sign-in and the review queue), `image` (an item's image, fetched
for the reviewer), `posts` (the posts' text), `moderation` (reports and labels), `records` (banks, the audit
logs, a subject's history), `bank_upload` (importing a bank file from the Banks page) and `imports` (those
imports, running in the background), `preferences` (each user's own settings: how images are hidden), `web`
(templates, forms, errors, security headers).
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from labeler.console import bank_upload, moderation, pages, preferences, records
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
            Route("/items/decide", pages.decide_selected, methods=["POST"]),
            Route("/items/{item_id}/image", item_image),
            Route("/reports", moderation.reports),
            Route("/reports/act", moderation.act_on_report, methods=["POST"]),
            Route("/labels", moderation.labels),
            Route("/labels/negate", moderation.negate_label, methods=["POST"]),
            Route("/banks", records.banks),
            Route("/banks/entry", records.set_entry_state, methods=["POST"]),
            Route("/banks/remove", records.remove_bank, methods=["POST"]),
            Route("/banks/import", bank_upload.import_bank_file, methods=["POST"]),
            Route("/banks/imports/{import_id}", bank_upload.import_status),
            Route("/audit", records.audit),
            Route("/settings", preferences.settings_page, methods=["GET", "POST"]),
            Route("/history", records.history),
            Mount("/static", StaticFiles(directory=STATIC_DIR)),
        ],
        middleware=[Middleware(SecurityHeaders)],
    )
