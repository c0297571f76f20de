"""Syntax checks for the identifiers a label carries: DID, AT-URI, CID, NSID, datetime (SPEC-DID, SPEC-LEX).

Built on the `atproto` SDK's validators where they are right; AT-URIs are parsed here because the SDK's regex
rejects `%` in DID authorities (`did:web:host%3A8080`), and CIDs are parsed by libipld rather than a regex.
Every check raises `ValueError` with a message fit for an `InvalidRequest`.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, Final

import libipld

MAX_URI_LENGTH: Final = 8 * 1024
MAX_DID_LENGTH: Final = 2048  # the DID spec's limit, as the SDK's validator has it
_STRICT: Final[Any] = SimpleNamespace(context={"strict_string_format": True})
_NSID_RE: Final = re.compile(
    r"[a-zA-Z]([a-zA-Z0-9-]{0,62})?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,62})?)+(\.[a-zA-Z]([a-zA-Z0-9]{0,62})?)"
)


# The common DID shape (no percent-encoding), a subset of what the SDK's validator accepts: checked with one regex,
# since every label's subject (and `src`) is checked on the write path; anything else goes to the SDK.
_PLAIN_DID_RE: Final = re.compile(r"did:[a-z]+:[a-zA-Z0-9._:-]*[a-zA-Z0-9._-]")


def _sdk_check(validator: str, value: str) -> str:
    """The SDK's validators anchor their regexes with `$`, which also matches before a trailing newline.

    The SDK is imported on first use: its package imports its whole client (~0.5 s), which a CLI command that
    never checks an unusual identifier should not pay for at start."""
    if value.endswith("\n"):
        raise ValueError(f"invalid identifier (trailing newline): {value!r}")
    from atproto_client.models import string_formats

    result: str = getattr(string_formats, validator)(value, _STRICT)
    return result


def check_did(value: str) -> str:
    if len(value) <= MAX_DID_LENGTH and _PLAIN_DID_RE.fullmatch(value):
        return value
    return _sdk_check("validate_did", value)


def is_did(value: str) -> bool:
    try:
        check_did(value)
    except ValueError:
        return False
    return True


def check_handle(value: str) -> str:
    return _sdk_check("validate_handle", value)


def check_nsid(value: str) -> str:
    if len(value) > 317 or not _NSID_RE.fullmatch(value):
        raise ValueError(f"invalid NSID: {value!r}")
    return value


def check_record_key(value: str) -> str:
    return _sdk_check("validate_record_key", value)


def check_at_uri(value: str) -> str:
    """`at://<did-or-handle>[/<collection>[/<rkey>]]`, no query or fragment."""
    if len(value) > MAX_URI_LENGTH:
        raise ValueError("invalid AT-URI: too long")
    if not value.startswith("at://"):
        raise ValueError(f"invalid AT-URI (must start with at://): {value!r}")
    parts = value[5:].split("/")
    if len(parts) > 3 or any(p == "" for p in parts):
        raise ValueError(f"invalid AT-URI: {value!r}")
    authority = parts[0]
    if authority.startswith("did:"):
        check_did(authority)
    else:
        check_handle(authority)
    if len(parts) > 1:
        check_nsid(parts[1])
    if len(parts) > 2:
        check_record_key(parts[2])
    return value


def check_subject_uri(value: str) -> str:
    """A label subject: an AT-URI for a record (or repo), or a bare DID for an account."""
    if value.startswith("did:"):
        return check_did(value)
    if not value.startswith("at://"):
        raise ValueError(f"invalid subject (an at:// URI for a record, or a DID for an account): {value!r}")
    return check_at_uri(value)


def check_cid(value: str) -> str:
    if not value or len(value) > 256:
        raise ValueError("invalid CID")
    try:
        libipld.decode_cid(value)
    except Exception:
        raise ValueError(f"invalid CID: {value!r}") from None
    return value


def check_datetime(value: str) -> str:
    """The lexicon `datetime` format: RFC 3339 ∩ ISO 8601, timezone required, `-00:00` forbidden."""
    if len(value) > 64:
        raise ValueError("invalid datetime: too long")
    return _sdk_check("validate_datetime", value)


def parse_datetime(value: str) -> datetime:
    """Parse a lexicon datetime (already checked) to an aware datetime."""
    check_datetime(value)
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    if "." in text:
        base, rest = text.split(".", 1)
        digits = re.match(r"\d+", rest)
        assert digits is not None
        frac = digits.group(0)
        text = f"{base}.{(frac + '000000')[:6]}{rest[len(frac) :]}"
    return datetime.fromisoformat(text)


def format_datetime(moment: datetime) -> str:
    """Canonical form for values we write: UTC, milliseconds, `Z` (protocol.md §1.1)."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


_NOW_SECOND: tuple[int, str] = (-1, "")  # (Unix second, its "YYYY-MM-DDTHH:MM:SS"), replaced whole: thread-safe


def now() -> str:
    """The current time as `format_datetime` writes it. The label writer stamps every write with it, so the
    date-time text is built once per second (a datetime plus strftime per call cost ~2.5 µs, about a tenth of
    what a label costs besides its signature)."""
    global _NOW_SECOND
    ns = time.time_ns()
    second = ns // 1_000_000_000
    cached_second, text = _NOW_SECOND
    if second != cached_second:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _NOW_SECOND = (second, text)
    return f"{text}.{ns // 1_000_000 % 1000:03d}Z"
