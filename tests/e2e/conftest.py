"""Session-wide devnet (Bluesky's PLC + PDS on loopback) for the end-to-end tests.

Without the Node install the tests skip locally (with the command to run) and fail under ``CI=true``.
``LABELER_E2E_AUTO_INSTALL=1`` makes the fixture run install.sh itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from support.postgres import PG_URL, pg_unreachable

from .harness import (
    INSTALL_HINT,
    AppView,
    Devnet,
    DevnetError,
    Ozone,
    install_problem,
    run_install,
    start_appview,
    start_devnet,
    start_ozone,
)


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the devnet fixture, so ``-m 'not devnet'`` deselects them."""
    for item in items:
        if "devnet" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.devnet)


@pytest.fixture(scope="session")
def devnet() -> Iterator[Devnet]:
    """A running PLC + PDS with accounts alice, bob, labeler and one image post by alice (see harness.py)."""
    in_ci = os.environ.get("CI", "").strip().lower() == "true"
    problem = install_problem()
    if problem is not None and _truthy("LABELER_E2E_AUTO_INSTALL"):
        run_install()
        problem = install_problem()
    if problem is not None:
        message = f"devnet unavailable: {problem}. Install with: {INSTALL_HINT}"
        if in_ci:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        with start_devnet() as net:
            yield net
    except DevnetError as exc:
        pytest.fail(str(exc), pytrace=False)


def _pg_url_or_skip(what: str) -> str:
    """The test PostgreSQL as a plain postgresql:// URL for Node; skip without it, except under CI=true."""
    reason = pg_unreachable()
    if reason:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"{reason}; CI=true requires PostgreSQL for {what}", pytrace=False)
        pytest.skip(reason)
    return PG_URL.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture(scope="session")
def ozone(devnet: Devnet) -> Ozone:
    """Ozone on the session's devnet, on the test PostgreSQL (skipped without it, except under CI=true)."""
    db_url = _pg_url_or_skip("Ozone")
    try:
        return start_ozone(devnet, db_url)
    except DevnetError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def appview(devnet: Devnet) -> AppView:
    """Bluesky's reference AppView on the session's devnet, on the test PostgreSQL (skipped without it, except
    under CI=true). It indexes the devnet's PDS; `feed_labels` gives it a labeler's labels."""
    db_url = _pg_url_or_skip("the AppView")
    try:
        return start_appview(devnet, db_url)
    except DevnetError as exc:
        pytest.fail(str(exc), pytrace=False)
