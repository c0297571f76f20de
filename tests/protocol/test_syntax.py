"""Identifier syntax: subject URIs, datetimes (valid and invalid vector files)."""

from __future__ import annotations

import pytest
from vectors import lines

from labeler.protocol import syntax


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


def test_cid_is_parsed_not_pattern_matched() -> None:
    syntax.check_cid("bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm")
    with pytest.raises(ValueError):
        syntax.check_cid("bafyNOTACIDATALL")
