"""The console's record pages: the hash banks (with entries switched off or held for review, which it can change
as `labeler entries` does, removing a bank as `labeler bank remove` does, and the imports of `bank_upload`), the
audit logs (moderation events, review decisions, people's bank changes and entry state changes: who, via what,
what, why), and one
subject's history (as `labeler explain`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from labeler.console.auth import ADMIN, VIA, actor, console_auth
from labeler.console.bank_upload import MAX_UPLOAD_BYTES, imports
from labeler.console.moderation import MOD_TOOL
from labeler.console.web import ConsoleError, Redirect, page, query_text, render
from labeler.pipeline.actions.screen import MODES, EntryStateChange
from labeler.pipeline.bank_import import FORMATS
from labeler.pipeline.banks import BankChange, BankError
from labeler.pipeline.evidence import explain, summary
from labeler.pipeline.review import ReviewItem
from labeler.pipeline.signals import SIGNAL_TYPES
from labeler.reports.models import EVENT_REPORT, ModEvent
from labeler.reports.subject import parse_subject_param
from labeler.service import Labeler
from labeler.xrpc.params import get_int

AUDIT_PAGE: Final = 100
AUDIT_LOGS: Final = ("events", "decisions", "banks", "entries")
BANKS_PATH: Final = "/console/banks"
MAX_NAME: Final = 200
MAX_REASON: Final = 2000


@page
async def banks(request: Request) -> Response:
    session = await console_auth(request).require(request)
    labeler: Labeler = request.app.state.labeler
    context = {
        "session": session,
        "actor": actor(session),
        "banks": await labeler.pipeline.banks.all_banks(),
        "states": await labeler.pipeline.screen.states(),
        "is_admin": session.user == ADMIN,
        "removed": query_text(request, "removed")[:MAX_NAME],
        "hma": labeler.settings.matcher == "hma",
        "imports": await imports(request).recent(),
        "signal_types": SIGNAL_TYPES,
        "formats": FORMATS,
        "max_upload_mib": MAX_UPLOAD_BYTES // (1024 * 1024),
    }
    return render(request, "banks.html", context)


@page
async def audit(request: Request) -> Response:
    """One of the audit logs, newest first, 100 a page (`before` = the last id seen): moderation events (reports
    and moderators' actions on them and on labels), review decisions, bank changes people made, or bank entries
    disabled, made review-only or let match again."""
    session = await console_auth(request).require(request)
    labeler: Labeler = request.app.state.labeler
    log = request.query_params.get("log", "events")
    if log not in AUDIT_LOGS:
        raise ConsoleError(400, f"log must be one of {', '.join(AUDIT_LOGS)}")
    before = get_int(request.query_params, "before", default=None, minimum=1, maximum=2**62)
    rows: Sequence[ModEvent | ReviewItem | BankChange | EntryStateChange]
    if log == "events":
        rows = await labeler.reports.store.events(limit=AUDIT_PAGE, cursor=before)
    elif log == "decisions":
        rows = await labeler.pipeline.reviews.decided(before=before, limit=AUDIT_PAGE)
    elif log == "banks":
        rows = await labeler.pipeline.banks.changes_by_people(before=before, limit=AUDIT_PAGE)
    else:
        rows = await labeler.pipeline.screen.changes(before=before, limit=AUDIT_PAGE)
    context = {
        "session": session,
        "actor": actor(session),
        "log": log,
        "logs": AUDIT_LOGS,
        "rows": rows,
        "event_via": event_via,
        "bank_via": bank_via,
        "next": rows[-1].id if len(rows) == AUDIT_PAGE else None,
    }
    return render(request, "audit.html", context)


def event_via(event: ModEvent) -> str:
    """What a moderation event came through: the tool it names (`modTool`; the console names itself), else the
    CLI (actor `cli`), createReport for a report, emitEvent for the rest."""
    name = event.mod_tool.get("name") if isinstance(event.mod_tool, dict) else None
    if isinstance(name, str) and name:
        return VIA if name == MOD_TOOL["name"] else name
    if event.actor == "cli":
        return "cli"
    return "createReport" if event.event.get("$type") == EVENT_REPORT else "emitEvent"


def bank_via(change: BankChange) -> str:
    """Only `labeler bank` (actor `cli`) and the console's Banks page name who changed a bank."""
    return "cli" if change.actor == "cli" else VIA


@page
async def history(request: Request) -> Response:
    """Why a subject carries labels, as `labeler explain` tells it: current labels, label history with evidence,
    review items with their decisions, and every action with its outcome and reversal."""
    session = await console_auth(request).require(request)
    labeler: Labeler = request.app.state.labeler
    raw = query_text(request, "uri")
    if not raw:
        raise ConsoleError(400, "name a subject: ?uri=<at:// URI or DID>")
    uri = parse_subject_param(raw)
    p = labeler.pipeline
    report = await explain(labeler.store, p.jobs, p.reviews, uri, p.actioner.outbox)
    context = {"session": session, "actor": actor(session), "report": report, "summary": summary}
    return render(request, "history.html", context)


@page
async def set_entry_state(request: Request) -> Response:
    """Switch a bank entry off (`disabled`), to review-only, or back on (`clear`), as `labeler entries` does."""
    session, form = await console_auth(request).posted(request)
    labeler: Labeler = request.app.state.labeler
    bank, entry_id, mode = form.get("bank", "").strip(), form.get("entry_id", "").strip(), form.get("mode", "")
    reason = form.get("reason", "").strip() or None
    if mode not in (*MODES, "clear"):
        raise ConsoleError(400, f"mode must be one of {', '.join(MODES)}, clear")
    if not (0 < len(bank) <= MAX_NAME and 0 < len(entry_id) <= MAX_NAME) or len(reason or "") > MAX_REASON:
        raise ConsoleError(400, f"name a bank and an entry (at most {MAX_NAME} characters), and a shorter reason")
    screen, who = labeler.pipeline.screen, actor(session)
    if mode == "clear":
        await screen.clear(bank, entry_id, actor=who, via=VIA, reason=reason)
    else:
        await screen.set_state(bank, entry_id, mode, reason=reason, actor=who, via=VIA)
    raise Redirect(BANKS_PATH)


@page
async def remove_bank(request: Request) -> Response:
    """Remove a bank and all its entries, as `labeler bank remove` does; the operator only, who types the bank's
    name again to confirm. The bank change log keeps who removed it."""
    session, form = await console_auth(request).posted(request)
    if session.user != ADMIN:
        raise ConsoleError(403, "only the operator (admin) removes banks")
    bank, typed = form.get("bank", "").strip(), form.get("confirm", "").strip()
    if not 0 < len(bank) <= MAX_NAME:
        raise ConsoleError(400, f"name a bank (at most {MAX_NAME} characters)")
    if typed != bank:
        raise ConsoleError(400, "type the bank's name to confirm its removal")
    labeler: Labeler = request.app.state.labeler
    try:
        await labeler.pipeline.banks.drop(bank, actor=actor(session))
    except BankError as exc:
        raise ConsoleError(404, str(exc)) from None
    raise Redirect(f"{BANKS_PATH}?removed={quote(bank, safe='')}")
