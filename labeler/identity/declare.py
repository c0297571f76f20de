"""The declaration record `app.bsky.labeler.service/self`: build from config, validate, publish, fetch.

Validation is ours (value syntax, lexicon limits) and the SDK's (`models.AppBskyLabelerService.Record` in strict
mode), so a record that the lexicon would reject never reaches the PDS.
"""

from __future__ import annotations

from typing import Any, Final

import httpx

from labeler.config import Settings
from labeler.declaration import GLOBAL_VALUES, IDENTIFIER_RE, load_declaration
from labeler.identity.pds_client import PdsAccount, PdsError, pds_session, pds_step

COLLECTION: Final = "app.bsky.labeler.service"
RKEY: Final = "self"
MAX_VALUE_BYTES: Final = 128  # com.atproto.label.defs#label val


class DeclarationError(ValueError):
    """The record would be rejected, or is not one; the message lists every problem."""


def build_record(settings: Settings) -> dict[str, Any]:
    record = load_declaration(settings).to_record()
    validate_record(record)
    return record


def value_problem(value: str) -> str | None:
    """Why clients would not show a label value, or None (protocol.md §1.1)."""
    if value in GLOBAL_VALUES:
        return None
    if len(value.encode()) > MAX_VALUE_BYTES:
        return f"{value[:40]!r}… is longer than {MAX_VALUE_BYTES} bytes"
    if not IDENTIFIER_RE.fullmatch(value):
        return f"{value!r} does not match ^[a-z-]+$ (clients ignore it)"
    return None


def validate_record(record: dict[str, Any]) -> None:
    """DeclarationError listing every problem, ours and the SDK model's."""
    problems: list[str] = []
    raw_policies = record.get("policies")
    policies = raw_policies if isinstance(raw_policies, dict) else {}
    values = policies.get("labelValues") or []
    problems += [p for p in map(value_problem, values) if p]
    if len(set(values)) != len(values):
        problems.append("labelValues has duplicates")
    defined = [d.get("identifier") for d in policies.get("labelValueDefinitions") or [] if isinstance(d, dict)]
    problems += [f"definition {i!r} is not in labelValues" for i in defined if i not in values]
    # The SDK's models are imported when a record is checked, not with the CLI (labeler.cli).
    from atproto import models
    from atproto_client.exceptions import ModelError
    from atproto_client.models.utils import get_or_create

    try:
        get_or_create(record, models.AppBskyLabelerService.Record, strict=True)
    except (ModelError, ValueError, TypeError) as exc:
        problems.append(f"not a valid {COLLECTION} record: {exc}")
    if problems:
        raise DeclarationError("; ".join(problems))


async def publish(account: PdsAccount, record: dict[str, Any], *, expect_did: str) -> tuple[str, str]:
    """putRecord at `self` as the account; returns (uri, cid). Refuses to publish for another DID."""
    from atproto import models

    validate_record(record)
    async with pds_session(account) as session:
        if session.did != expect_did:
            raise PdsError(f"{account.identifier} is {session.did}, not the labeler's DID {expect_did}")
        async with pds_step("putRecord"):
            out = await session.client.com.atproto.repo.put_record(
                models.ComAtprotoRepoPutRecord.Data(repo=session.did, collection=COLLECTION, rkey=RKEY, record=record)
            )
    return out.uri, out.cid


async def fetch_record(http: httpx.AsyncClient, pds_url: str, did: str) -> dict[str, Any] | None:
    """The published record (getRecord, no auth), or None if there is none; httpx errors propagate."""
    response = await http.get(
        f"{pds_url.rstrip('/')}/xrpc/com.atproto.repo.getRecord",
        params={"repo": did, "collection": COLLECTION, "rkey": RKEY},
    )
    if response.status_code in (400, 404):  # RecordNotFound is a 400 in the reference PDS
        return None
    response.raise_for_status()
    value = response.json().get("value")
    return value if isinstance(value, dict) else None
