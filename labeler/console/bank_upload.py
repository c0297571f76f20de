"""Importing a bank file from the Banks page: the upload form's route and the import's status page.

The operator (`admin`) only, as removing a bank is, with the session's CSRF token in the form. The file is read
as `labeler bank import` reads it (`labeler.pipeline.bank_import`) and refused whole, before anything is written,
when it is larger than MAX_UPLOAD_BYTES, not UTF-8, empty, or has any bad row (the page lists the rows and why);
then `labeler.console.imports` adds it in the background and the status page (served by any process, from the
database) refreshes itself until it is done.

Starlette parses the multipart body (with python-multipart); the serving app's body limit for this path stops an
upload a little past MAX_UPLOAD_BYTES, the file part is held in memory (spooled to an unlinked temporary file past
1 MiB) and closed as soon as it is read, and the parsed entries live only as long as the import.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Final

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from labeler.console.auth import ADMIN, actor, console_auth
from labeler.console.imports import KEPT, BankImport, BankImports, ImportBusy
from labeler.console.sessions import Session
from labeler.console.web import ConsoleError, Redirect, form_text, page, render
from labeler.pipeline.bank_import import FORMATS, ParsedFile, bank_signal_type, detect_format, parse_text
from labeler.pipeline.banks import BankError, check_bank_name
from labeler.pipeline.signals import SIGNAL_TYPES
from labeler.service import Labeler

IMPORT_PATH: Final = "/console/banks/import"
STATUS_PATH: Final = "/console/banks/imports"
MAX_UPLOAD_BYTES: Final = 16 * 1024 * 1024  # about 250,000 PDQ hashes with ids; larger lists: labeler bank import
BODY_LIMIT: Final = MAX_UPLOAD_BYTES + 64 * 1024  # the file and the form around it (the app's per-path limit)
SHOWN_ERRORS: Final = 20
_IMPORT_ID: Final = re.compile(r"[0-9a-f]{16}")
_MAX_FIELD: Final = 1024


@dataclass(frozen=True)
class Upload:
    bank: str
    create: bool
    signal_type: str | None
    fmt: str
    filename: str
    text: str


def imports(request: Request) -> BankImports:
    found: BankImports = request.app.state.console_imports
    return found


@page
async def import_bank_file(request: Request) -> Response:
    """Check the upload whole, then start importing it and show its status page."""
    auth = console_auth(request)
    session = await auth.require(request)
    if session.user != ADMIN:
        raise ConsoleError(403, "only the operator (admin) imports banks")
    labeler: Labeler = request.app.state.labeler
    if labeler.settings.matcher == "hma":
        raise ConsoleError(409, 'with matcher = "hma" the banks are HMA\'s: import with labeler bank import')
    upload = await _read_upload(request, session)
    store = labeler.pipeline.banks
    try:
        check_bank_name(upload.bank)
        signal_type = await bank_signal_type(store, upload.bank, upload.signal_type, upload.create)
    except BankError as exc:
        raise ConsoleError(400, str(exc)) from None
    parsed = await asyncio.to_thread(parse_text, upload.text, upload.fmt, signal_type)
    _refuse_bad_rows(parsed, upload.filename)
    try:
        job = await imports(request).start(
            upload.bank,
            [entry for _, entry in parsed.entries],
            filename=upload.filename,
            signal_type=signal_type,
            create=upload.create,
            actor=actor(session),
        )
    except ImportBusy as busy:
        raise ConsoleError(
            409,
            f"an import into {busy.running.bank} is running ({STATUS_PATH}/{busy.running.id}): "
            "wait for it to finish, then upload this file",
        ) from None
    raise Redirect(f"{STATUS_PATH}/{job.id}")


@page
async def import_status(request: Request) -> Response:
    """One import's counts; the page reloads itself every second while it runs (a meta refresh, no script)."""
    session = await console_auth(request).require(request)
    import_id = request.path_params["import_id"]
    job: BankImport | None = await imports(request).get(import_id) if _IMPORT_ID.fullmatch(import_id) else None
    if job is None:
        raise ConsoleError(404, f"no such import (the last {KEPT} are kept): the Banks page lists them")
    context = {"session": session, "actor": actor(session), "job": job}
    return render(request, "bank-import.html", context)


async def _read_upload(request: Request, session: Session) -> Upload:
    """The form's fields and file, checked: CSRF, one file, at most MAX_UPLOAD_BYTES of UTF-8."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != "multipart/form-data":
        raise ConsoleError(415, "send the file as multipart/form-data (the Banks page's import form)")
    try:
        async with request.form(max_files=1, max_fields=8, max_part_size=_MAX_FIELD) as form:
            fields = {
                form_text(name, "a form field's name"): form_text(value, f"the form field {name[:40]!r}")
                for name, value in form.multi_items()
                if isinstance(value, str)
            }
            auth = console_auth(request)
            auth.check_csrf(request, session, fields)
            file = form.get("file")
            if not isinstance(file, UploadFile):
                raise ConsoleError(400, "choose a file to import")
            data = await file.read(MAX_UPLOAD_BYTES + 1)
            filename = form_text(file.filename or "", "the file's name")[:200]
    except HTTPException as exc:  # python-multipart's refusals, as Starlette words them
        raise ConsoleError(400, f"the upload is not a valid form: {exc.detail}") from None
    if len(data) > MAX_UPLOAD_BYTES:
        raise ConsoleError(
            413, f"the file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB: import it with labeler bank import"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConsoleError(400, f"the file is not UTF-8 text (byte {exc.start})") from None
    del data
    fmt, signal = fields.get("format", ""), fields.get("signal", "")
    if fmt not in ("", *FORMATS) or signal not in ("", *SIGNAL_TYPES):
        raise ConsoleError(400, f"format is one of {', '.join(FORMATS)}; signal one of {', '.join(SIGNAL_TYPES)}")
    return Upload(
        bank=fields.get("bank", "").strip(),
        create=fields.get("create") == "on",
        signal_type=signal or None,
        fmt=fmt or detect_format(PurePosixPath(filename)),
        filename=filename,
        text=text,
    )


def _refuse_bad_rows(parsed: ParsedFile, filename: str) -> None:
    """Refuse the whole file if any row is bad (the CLI imports the good ones; here nothing is half-done)."""
    if parsed.errors:
        shown = [f"{filename or 'the file'}:{line}: {why}" for line, why in parsed.errors[:SHOWN_ERRORS]]
        more = len(parsed.errors) - len(shown)
        raise ConsoleError(
            400,
            f"nothing was imported: {len(parsed.errors)} bad row(s); fix them and upload the file again"
            + (f" (the first {len(shown)} are listed, {more} more)" if more else ""),
            details=shown,
        )
    if not parsed.entries:
        raise ConsoleError(400, "the file has no hashes")
