"""The console's pages: sign-in and sign-out, the review queue, and review decisions.

Decisions go through `labeler.pipeline.actions.decisions`, as `labeler review` and `/api/v1/review` do, with the
session's audit name as the actor.
"""

from __future__ import annotations

import asyncio
import re
from typing import Final

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from labeler.console.auth import ADMIN, VIA, actor, console_auth
from labeler.console.authors import handles
from labeler.console.posts import posts
from labeler.console.preferences import preferences
from labeler.console.queue import OTHERS, SCAN, pending
from labeler.console.web import ConsoleError, Redirect, page, read_form, render
from labeler.pipeline.actions.decisions import FALSE_POSITIVE
from labeler.pipeline.banks import BankError
from labeler.pipeline.match.base import MatchFailure
from labeler.pipeline.review import ReviewError
from labeler.service import Labeler
from labeler.xrpc.params import get_int, path_id

QUEUE_PATH: Final = "/console/queue"
DECISIONS: Final = ("confirm", "reject", *FALSE_POSITIVE)
BULK_DECISIONS: Final = ("reject", *FALSE_POSITIVE)
BULK_FIELD: Final = re.compile(r"item-[1-9][0-9]{0,17}")  # one checkbox per item: item-<id>
MAX_NOTE: Final = 2000


@page
async def index(request: Request) -> Response:
    raise Redirect(QUEUE_PATH)


@page
async def login(request: Request) -> Response:
    auth = console_auth(request)
    if request.method == "GET":
        if await auth.session(request) is not None:
            raise Redirect(QUEUE_PATH)
        anonymous = auth.anonymous(request)
        response = render(request, "login.html", {"csrf": anonymous.csrf})
        auth.set_cookie(request, response, anonymous)
        return response
    form = await read_form(request)
    auth.check_csrf(request, auth.anonymous(request), form)
    session = await auth.sign_in(request, form.get("user", "").strip(), form.get("credential", ""))
    response = RedirectResponse(QUEUE_PATH, status_code=303)
    auth.set_cookie(request, response, session)
    return response


@page
async def logout(request: Request) -> Response:
    auth = console_auth(request)
    session, _form = await auth.posted(request)
    await auth.sign_out(session)
    response = RedirectResponse("/console/login", status_code=303)
    auth.clear_cookie(response)
    return response


@page
async def queue(request: Request) -> Response:
    session = await console_auth(request).require(request)
    labeler: Labeler = request.app.state.labeler
    cards, read = await pending(labeler.pipeline.reviews)
    texts, names = await asyncio.gather(
        posts(labeler.pipeline.fetcher, [(c.item.subject_uri, c.item.subject_cid) for c in cards]),
        handles(labeler.resolver, [c.author for c in cards]),
    )
    params = request.query_params
    done = get_int(params, "done", default=None, minimum=1, maximum=2**62)
    bulk = get_int(params, "bulk", default=None, minimum=0, maximum=SCAN)
    skipped = get_int(params, "skipped", default=0, minimum=0, maximum=SCAN)
    outcome = params.get("outcome")
    context = {
        "session": session,
        "actor": actor(session),
        "cards": cards,
        "posts": texts,
        "handles": names,
        "read": read,
        "scan": SCAN,
        "others_shown": OTHERS,
        "done": done if outcome in DECISIONS else None,
        "outcome": outcome,
        "bulk": bulk if outcome in BULK_DECISIONS else None,
        "skipped": skipped,
        "allow_list": labeler.pipeline.decisions.allow_list.bank is not None,
        "is_admin": session.user == ADMIN,
        "wellness": await preferences(request).wellness(session.user),
    }
    return render(request, "queue.html", context)


@page
async def decide(request: Request) -> Response:
    session, form = await console_auth(request).posted(request)
    item_id = path_id(request, "item_id")
    decision, note = _decision(form, DECISIONS)
    labeler: Labeler = request.app.state.labeler
    try:
        await labeler.pipeline.reviews.get(item_id)
    except ReviewError:
        raise ConsoleError(404, f"no review item {item_id}") from None
    await _decide(labeler, item_id, decision, note, actor(session))
    raise Redirect(f"{QUEUE_PATH}?done={item_id}&outcome={decision}")


@page
async def decide_selected(request: Request) -> Response:
    """Reject the selected items at once (plainly or as false positives); confirming is one item at a time, so
    every label stands for an image someone chose to act on. Items decided meanwhile are skipped and counted."""
    session, form = await console_auth(request).posted(request)
    decision, note = _decision(form, BULK_DECISIONS)
    ids = sorted({int(name[5:]) for name in form if BULK_FIELD.fullmatch(name)})
    if not ids:
        raise ConsoleError(400, "select at least one item (its checkbox, or x)")
    labeler: Labeler = request.app.state.labeler
    skipped = 0
    for item_id in ids:
        try:
            await _decide(labeler, item_id, decision, note, actor(session))
        except ConsoleError as error:
            if error.status != 409:
                raise
            skipped += 1
    raise Redirect(f"{QUEUE_PATH}?bulk={len(ids) - skipped}&skipped={skipped}&outcome={decision}")


def _decision(form: dict[str, str], allowed: tuple[str, ...]) -> tuple[str, str | None]:
    decision, note = form.get("decision", ""), form.get("note", "").strip() or None
    if decision not in allowed:
        raise ConsoleError(400, f"decision must be one of {', '.join(allowed)}")
    if note is not None and len(note) > MAX_NOTE:
        raise ConsoleError(400, f"a note is at most {MAX_NOTE} characters")
    return decision, note


async def _decide(labeler: Labeler, item_id: int, decision: str, note: str | None, who: str) -> None:
    """One decision through `labeler.pipeline.actions.decisions`; ConsoleError 409 if it cannot be made."""
    decisions = labeler.pipeline.decisions
    try:
        if decision == "confirm":
            await decisions.confirm(item_id, actor=who, note=note, via=VIA)
        else:
            false_positive = decision if decision in FALSE_POSITIVE else None
            await decisions.reject(item_id, actor=who, note=note, false_positive=false_positive, via=VIA)
    except (ReviewError, BankError) as exc:
        raise ConsoleError(409, str(exc)) from None
    except MatchFailure as exc:
        retry = {"Retry-After": "5"}
        raise ConsoleError(503, f"the matcher cannot take this now: {exc.message}", headers=retry) from None
