"""Hostile-input tests: a labeler with every authenticated surface open (admin password, a moderator, an upload
token, a reporter whose key a fake PLC serves), so that a hostile body reaches the code behind the auth check.

`server` / `labeler` (tests/conftest.py) pick up `settings` below, so every test here runs on SQLite and on
PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.fake_plc import did_document, new_plc_did, running_fake_plc

from labeler.config import Settings
from labeler.protocol.crypto import SigningKey

from .callers import LABELER_DID, UPLOAD_TOKEN, Caller, Callers


@pytest.fixture(scope="session")
def callers() -> Iterator[Callers]:
    with running_fake_plc() as (plc, server):
        made = []
        for _ in range(2):
            did, key = new_plc_did(), SigningKey.generate()
            plc.put(did, did_document(did, atproto=key, pds=None))  # no PDS: report intake gives up at once
            made.append(Caller(did, key))
        yield Callers(server.url, *made)


@pytest.fixture
def settings(make_settings: Any, callers: Callers) -> Settings:
    return make_settings(
        did=LABELER_DID,
        plc_url=callers.plc_url,
        moderators=callers.moderator.did,
        upload_tokens=UPLOAD_TOKEN,
        # The fuzz test's garbage credentials come from the same address as its valid ones, which must keep
        # working; the limit itself is tested in test_failed_logins.py.
        max_login_failures=1_000_000,
    )
