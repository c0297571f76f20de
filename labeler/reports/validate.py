"""createReport input checks: the lexicon's shape and limits, then our declaration (protocol.md §4.1, §4.3).

Lexicon limits: `reason` ≤ 2000 graphemes and ≤ 20000 UTF-8 bytes; `modTool.name` is required in a modTool.
Declaration: the reason must be declared (or map onto a declared legacy reason, see `reasons`); the subject's
kind must be in `subjectTypes` and a record's collection in `subjectCollections` (absent = all, [] = none).
Appeals skip the declaration: they contest our own labels, and clients offer them on any label we publish
whatever we declared (the check that matters for them is the reporter's identity, see `service`).
"""

from __future__ import annotations

from typing import Any, Final

from labeler.declaration import Declaration
from labeler.protocol.errors import InvalidRequest
from labeler.reports.graphemes import grapheme_count
from labeler.reports.models import ReportInput
from labeler.reports.reasons import MAX_REASON_TYPE_LENGTH, is_appeal, reason_type_problem
from labeler.reports.subject import Subject, parse_subject_ref

MAX_REASON_GRAPHEMES: Final = 2000
MAX_REASON_BYTES: Final = 20_000
MAX_MOD_TOOL_NAME: Final = 1000


def parse_report_input(body: dict[str, Any], declaration: Declaration) -> ReportInput:
    """A createReport body → `ReportInput`; `InvalidRequest` with a message that names the problem."""
    reason_type = body.get("reasonType")
    if not isinstance(reason_type, str) or not reason_type:
        raise InvalidRequest("reasonType is required (a com.atproto.moderation.defs#reasonType string)")
    if len(reason_type) > MAX_REASON_TYPE_LENGTH:
        raise InvalidRequest(f"reasonType is longer than {MAX_REASON_TYPE_LENGTH} characters")
    subject = parse_subject_ref(body.get("subject"))
    reason = _reason(body.get("reason"))
    mod_tool = parse_mod_tool(body.get("modTool"))
    if not is_appeal(reason_type):
        problem = reason_type_problem(reason_type, declaration.reason_types)
        if problem:
            raise InvalidRequest(problem)
        check_subject_declared(subject, declaration)
    return ReportInput(reason_type=reason_type, subject=subject, reason=reason, mod_tool=mod_tool)


def check_subject_declared(subject: Subject, declaration: Declaration) -> None:
    types = declaration.subject_types
    if types is not None and subject.type not in types:
        accepted = ", ".join(types) or "none"
        raise InvalidRequest(f"this labeler does not accept reports on {subject.type}s (subjectTypes: {accepted})")
    collections = declaration.subject_collections
    if subject.type == "record" and collections is not None and subject.collection not in collections:
        accepted = ", ".join(collections) or "none"
        raise InvalidRequest(
            f"this labeler does not accept reports on {subject.collection} records (subjectCollections: {accepted})"
        )


def _reason(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest("reason must be a string")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate from a JSON \ud800 escape: not text, and not storable
        raise InvalidRequest("reason is not valid Unicode text") from None
    if "\x00" in value:  # PostgreSQL text cannot hold NUL
        raise InvalidRequest("reason must not contain NUL characters")
    if size > MAX_REASON_BYTES:
        raise InvalidRequest(f"reason is longer than {MAX_REASON_BYTES} bytes")
    if grapheme_count(value, stop_after=MAX_REASON_GRAPHEMES) > MAX_REASON_GRAPHEMES:
        raise InvalidRequest(f"reason is longer than {MAX_REASON_GRAPHEMES} characters")
    return value


def parse_mod_tool(value: Any) -> dict[str, Any] | None:
    """The lexicon's `#modTool` (createReport and emitEvent): `name` required, `meta` an optional object."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest("modTool must be an object")
    name = value.get("name")
    if not isinstance(name, str) or not name or len(name) > MAX_MOD_TOOL_NAME:
        raise InvalidRequest("modTool.name is required (a short string such as bsky-app/android)")
    meta = value.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise InvalidRequest("modTool.meta must be an object")
    return {"name": name, **({"meta": meta} if meta is not None else {})}
