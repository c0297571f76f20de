"""Report tests: reporters and moderators with keys in a fake PLC directory (real HTTP), and a labeler that
resolves them there. `server` / `labeler` (tests/conftest.py) pick up the `settings` below, so every test runs
on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from report_helpers import DECLARATION, LABELER_DID, People, register
from support.fake_plc import running_fake_plc

from labeler.config import Settings
from labeler.protocol.crypto import Curve


@pytest.fixture(scope="session")
def people() -> Iterator[People]:
    with running_fake_plc() as (plc, server):
        yield People(
            plc=plc,
            plc_url=server.url,
            alice=register(plc),
            bob=register(plc, Curve.P256),
            carol=register(plc, legacy=True),
            mod=register(plc),
        )


@pytest.fixture
def settings(make_settings: Any, people: People) -> Settings:
    return make_settings(
        did=LABELER_DID,
        plc_url=people.plc_url,
        moderators=f"{people.mod.did}, did:plc:othermoderatorothermod1",
        extra={"declaration": DECLARATION},
    )
