"""Fixtures of the identity tests: an in-memory PLC directory (one per module), a client for it, a fresh resolver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from support.memory_plc import MemoryPlc, running_memory_plc
from support.server import RunningServer

from labeler.identity.plc_directory import PlcDirectory
from labeler.identity.resolver import DidResolver


@pytest.fixture(scope="module")
def plc_server() -> Iterator[tuple[MemoryPlc, RunningServer]]:
    with running_memory_plc() as running:
        yield running


@pytest.fixture
def plc(plc_server: tuple[MemoryPlc, RunningServer]) -> Iterator[MemoryPlc]:
    plc_server[0].refuse = None
    yield plc_server[0]
    plc_server[0].refuse = None


@pytest.fixture
async def directory(plc_server: tuple[MemoryPlc, RunningServer]) -> AsyncIterator[PlcDirectory]:
    async with PlcDirectory(plc_server[1].url) as d:
        yield d


@pytest.fixture
async def resolver(plc_server: tuple[MemoryPlc, RunningServer]) -> AsyncIterator[DidResolver]:
    async with DidResolver(plc_url=plc_server[1].url, refresh_cooldown=0) as r:
        yield r
