"""Fixtures for pipeline tests: the HMA stand-in served by real uvicorn on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from support.fake_plc import running_fake_plc
from support.server import free_port

from .blob_server import PdsWorld
from .hma_standin import HmaStandin, serve
from .stream_standins import StreamStandin, serve_standin


@dataclass(frozen=True)
class RunningStandin:
    """A served stand-in: `url` to talk to, `control` to change its state from the test."""

    url: str
    control: HmaStandin


@pytest.fixture
def hma_standin() -> Iterator[RunningStandin]:
    """A loaded, healthy stand-in with no banks, on its own free port."""
    control = HmaStandin()
    with serve(control) as url:
        yield RunningStandin(url, control)


@pytest.fixture
def standin() -> Iterator[tuple[StreamStandin, str]]:
    """A firehose / Jetstream stand-in (`control` to publish and watch connections) and its URL."""
    control = StreamStandin()
    with serve_standin(control) as url:
        yield control, url


@pytest.fixture
def pds_world() -> Iterator[PdsWorld]:
    """A fake PLC (running) and a PDS stand-in on a reserved port (start it with `pds_world.pds_running()`)."""
    with running_fake_plc() as (plc, plc_server):
        yield PdsWorld(plc, plc_server, free_port())


# Fast retries and polls, so outage tests take seconds.
FAST_PIPELINE = {
    "retry_base_seconds": 0.05,
    "retry_cap_seconds": 0.3,
    "matcher_retry_cap_seconds": 0.3,
    "poll_seconds": 0.05,
    "bank_poll_seconds": 0.1,
    "lease_seconds": 30,
    "max_attempts": 100,
    "hash_processes": 1,
}
