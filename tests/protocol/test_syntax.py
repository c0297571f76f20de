"""Identifier syntax: subject URIs, datetimes (valid and invalid vector files)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from vectors import lines

from labeler.protocol import syntax
from labeler.protocol.label import check_value


@pytest.mark.parametrize("value", lines("syntax/subject_uri_valid.txt"))
def test_valid_subject_uris(value: str) -> None:
    assert syntax.check_subject_uri(value) == value


@pytest.mark.parametrize("value", lines("syntax/subject_uri_invalid.txt"))
def test_invalid_subject_uris(value: str) -> None:
    with pytest.raises(ValueError):
        syntax.check_subject_uri(value)


@pytest.mark.parametrize("value", lines("syntax/datetime_valid.txt"))
def test_valid_datetimes(value: str) -> None:
    assert syntax.check_datetime(value) == value
    syntax.parse_datetime(value)


@pytest.mark.parametrize("value", lines("syntax/datetime_invalid.txt"))
def test_invalid_datetimes(value: str) -> None:
    with pytest.raises(ValueError):
        syntax.check_datetime(value)


def test_now_is_canonical_milliseconds_z() -> None:
    value = syntax.now()
    assert len(value) == 24 and value.endswith("Z") and value[19] == "."
    syntax.check_datetime(value)


def test_now_is_the_current_time() -> None:
    """now() reuses the text of the current second; it must still follow the clock, to the millisecond."""
    for _ in range(3):
        start = datetime.now(UTC)
        value = syntax.now()
        after = datetime.now(UTC)
        assert start.replace(microsecond=start.microsecond // 1000 * 1000) <= syntax.parse_datetime(value) <= after
        assert value == syntax.format_datetime(syntax.parse_datetime(value))
        time.sleep(0.4)  # across a second boundary within the loop


def test_cid_is_parsed_not_pattern_matched() -> None:
    syntax.check_cid("bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm")
    with pytest.raises(ValueError):
        syntax.check_cid("bafyNOTACIDATALL")


DID_CASES = [
    "did:plc:z72i7hdynmk6r22z27h6tvur", "did:web:example.com", "did:web:localhost%3A8080", "did:plc:", "did:PLC:x",
    "did:plc:abc:", "did:plc:abc%", "did:plc:a%zz", "did:plc:abc/def", "did:plc:a@b", "did:plc:a b", "did:plc:é",
    "did:plc:abc\n", "did::abc", "did:plc:" + "a" * 2040, "did:plc:" + "a" * 2041, "did:ex:a.b_c-d:e",
]  # fmt: skip


@pytest.mark.parametrize(
    "value",
    DID_CASES
    + [
        v
        for v in lines("syntax/subject_uri_valid.txt") + lines("syntax/subject_uri_invalid.txt")
        if v.startswith("did:")
    ],
)
def test_check_did_agrees_with_the_sdk(value: str) -> None:
    """check_did's one-regex fast path accepts nothing the atproto SDK's validator rejects, and vice versa, but for
    a trailing newline, which the SDK's `$` lets through (below)."""
    from atproto_client.models import string_formats

    def outcome(check: Any) -> bool:
        try:
            check(value)
        except ValueError:
            return False
        return True

    sdk = outcome(lambda v: string_formats.validate_did(v, syntax._STRICT)) and not value.endswith("\n")
    assert outcome(syntax.check_did) == sdk


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (syntax.check_did, "did:plc:z72i7hdynmk6r22z27h6tvur"),
        (syntax.check_did, "did:web:localhost%3A8080"),
        (syntax.check_subject_uri, "did:web:example.com"),
        (syntax.check_subject_uri, "at://did:plc:z72i7hdynmk6r22z27h6tvur/app.bsky.feed.post/3jzfcijpj2z2a"),
        (syntax.check_subject_uri, "at://alice.bsky.social/app.bsky.feed.post"),
        (syntax.check_handle, "alice.bsky.social"),
        (syntax.check_nsid, "app.bsky.feed.post"),
        (syntax.check_record_key, "3jzfcijpj2z2a"),
        (syntax.check_datetime, "2026-11-22T00:00:00.000Z"),
        (check_value, "spam"),
        (check_value, "!hide"),
    ],
)
def test_a_trailing_newline_is_refused(check: Any, value: str) -> None:
    """Python's `$` also matches before a final newline, and the SDK's validators anchor with it: a label whose
    subject or value ends in one would be signed and served."""
    assert check(value) == value
    with pytest.raises(ValueError):
        check(value + "\n")
