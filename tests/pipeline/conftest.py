"""Fixtures for pipeline tests: the HMA stand-in served by real uvicorn on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from .hma_standin import HmaStandin, serve


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
