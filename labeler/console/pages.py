"""The console's pages: sign-in and sign-out, the review queue, and review decisions.

Decisions go through `labeler.pipeline.actions.decisions`, as `labeler review` and `/api/v1/review` do, with the
session's audit name as the actor.
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from labeler.console.auth import ADMIN, ConsoleAuth, actor
from labeler.console.queue import SCAN, pending
from labeler.console.web import ConsoleError, Redirect, page, read_form, render
from labeler.pipeline.actions.decisions import FALSE_POSITIVE
from labeler.pipeline.banks import BankError
from labeler.pipeline.match.base import MatchFailure
from labeler.pipeline.review import ReviewError
from labeler.service import Labeler
from labeler.xrpc.params import get_int, path_id

QUEUE_PATH: Final = "/console/queue"
DECISIONS: Final = ("confirm", "reject", *FALSE_POSITIVE)
MAX_NOTE: Final = 2000


def _auth(request: Request) -> ConsoleAuth:
    auth: ConsoleAuth = request.app.state.console_auth
    return auth


@page
async def index(request: Request) -> Response:
    raise Redirect(QUEUE_PATH)


@page
async def login(request: Request) -> Response:
    auth = _auth(request)
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
    auth = _auth(request)
    session = await auth.require(request)
    auth.check_csrf(request, session, await read_form(request))
    response = RedirectResponse("/console/login", status_code=303)
    auth.clear_cookie(response)
    return response


@page
async def queue(request: Request) -> Response:
    session = await _auth(request).require(request)
    labeler: Labeler = request.app.state.labeler
    cards, read = await pending(labeler.pipeline.reviews)
    done = get_int(request.query_params, "done", default=None, minimum=1, maximum=2**62)
    outcome = request.query_params.get("outcome")
    context = {
        "session": session,
        "actor": actor(session),
        "cards": cards,
        "read": read,
        "scan": SCAN,
        "done": done if outcome in DECISIONS else None,
        "outcome": outcome,
        "allow_list": labeler.pipeline.decisions.allow_list.bank is not None,
        "is_admin": session.user == ADMIN,
    }
    return render(request, "queue.html", context)


@page
async def decide(request: Request) -> Response:
    auth = _auth(request)
    session = await auth.require(request)
    form = await read_form(request)
    auth.check_csrf(request, session, form)
    item_id = path_id(request, "item_id")
    decision, note = form.get("decision", ""), form.get("note", "").strip() or None
    if decision not in DECISIONS:
        raise ConsoleError(400, f"decision must be one of {', '.join(DECISIONS)}")
    if note is not None and len(note) > MAX_NOTE:
        raise ConsoleError(400, f"a note is at most {MAX_NOTE} characters")
    labeler: Labeler = request.app.state.labeler
    decisions, who = labeler.pipeline.decisions, actor(session)
    try:
        await labeler.pipeline.reviews.get(item_id)
    except ReviewError:
        raise ConsoleError(404, f"no review item {item_id}") from None
    try:
        if decision == "confirm":
            await decisions.confirm(item_id, actor=who, note=note)
        else:
            false_positive = decision if decision in FALSE_POSITIVE else None
            await decisions.reject(item_id, actor=who, note=note, false_positive=false_positive)
    except (ReviewError, BankError) as exc:
        raise ConsoleError(409, str(exc)) from None
    except MatchFailure as exc:
        raise ConsoleError(
            503, f"the matcher cannot take this now: {exc.message}", headers={"Retry-After": "5"}
        ) from None
    raise Redirect(f"{QUEUE_PATH}?done={item_id}&outcome={decision}")
