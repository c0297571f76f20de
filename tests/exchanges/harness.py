"""What the tests of every exchange type share: a controllable clock, a bank fed by one exchange whose stand-in
runs on loopback (`World`), the environment `labeler exchange …` runs in, the check that a fetched hash is
matchable over the upload API, that credentials stay out of logs and the database, and that a page that stays
unreadable is read again before it is skipped."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import stat
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from pipeline.harness import eventually
from support.server import serve_in_thread

from labeler.cli import cli
from labeler.config import Settings
from labeler.exchanges.credentials import Credentials, credentials_path, write_credentials
from labeler.exchanges.fetch import UNREADABLE_TRIES, FetchReport, fetch_exchange, http_client
from labeler.exchanges.store import ExchangeStore
from labeler.logs import TextFormatter
from labeler.pipeline.actions.model import Action
from labeler.pipeline.banks import BankStore
from labeler.service import Labeler
from labeler.store.engine import create_engine
from labeler.store.migrate import upgrade
from labeler.testing import serve_labeler


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    """Exchange `name` feeding bank `bank`, its stand-in at `url`, its credentials under `keys_dir`."""

    standin: Any
    url: str
    stores: ExchangeStore
    keys_dir: Path
    clock: Clock
    name: str
    bank: str

    async def fetch(self, name: str | None = None, **given: Any) -> FetchReport:
        """One fetch of exchange `name` (this world's by default); `given` goes to `fetch_exchange` (`max_pages`)."""
        async with http_client(allow_private=True) as http:
            return await fetch_exchange(
                self.stores, name or self.name, keys_dir=self.keys_dir, http=http, clock=self.clock, **given
            )

    async def banked(self, bank: str | None = None) -> dict[str, tuple[str | None, str | None]]:
        """The bank's entries: hash → (external id, note)."""
        rows = await self.stores.banks.index_rows(bank or self.bank)
        return {value: (external_id, note) for value, _bank, _id, external_id, note in rows}

    def credentials(self, values: Mapping[str, str], name: str | None = None) -> None:
        write_credentials(self.keys_dir, name or self.name, Credentials(values))

    async def retried_then_skipped(self) -> FetchReport:
        """Fetches while the stand-in serves a page that stays unreadable: each of the first `UNREADABLE_TRIES`
        stops at it, saying how many fetches in a row did so in its error (`exchange list`); the next one skips
        it, and its report is returned."""
        for tries in range(1, UNREADABLE_TRIES + 1):
            report = await self.fetch()
            assert report.error is not None and not report.complete, report
            assert f"unreadable {tries} fetch(es) in a row" in report.error, report.error
            exchange = await self.stores.get(self.name)
            assert (exchange.unreadable, exchange.last_error) == (tries, report.error)
        assert "the next fetch skips it" in report.error
        return await self.fetch()

    async def fetch_keeping_secrets(self, secrets: Callable[[], Sequence[str]]) -> str:
        """One fetch with every logger at DEBUG, written as the labeler writes its logs; asserts that none of
        `secrets()` (asked after the fetch, so tokens it was given count) is in that text or in the exchanges
        table, and returns the text."""
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(TextFormatter())
        root = logging.getLogger()
        before = root.level
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        try:
            report = await self.fetch()
        finally:
            root.removeHandler(handler)
            root.setLevel(before)
        assert report.error is None and report.pages, report
        logged = stream.getvalue()
        async with self.stores.engine.connect() as conn:
            rows = [json.dumps(list(r), default=str) for r in await conn.execute(sa.text("SELECT * FROM exchanges"))]
        kept = list(secrets())
        assert logged and rows and kept and all(kept)
        assert [s for s in kept if s in logged or any(s in row for row in rows)] == []
        return logged


def served(standin: Any) -> Iterator[tuple[Any, str]]:
    """A stand-in (anything with a Starlette `app()`) and its URL while it runs on loopback: `yield from` it in a
    fixture."""
    with serve_in_thread(standin.app()) as server:
        yield standin, server.url


@asynccontextmanager
async def world(
    database_url: str,
    keys_dir: Path,
    *,
    standin: Any,
    url: str,
    type_: str,
    carries: Sequence[str],
    name: str,
    bank: str,
    now: float,
    options: Mapping[str, Any] | None = None,
    credentials: Mapping[str, str] | None = None,
) -> AsyncIterator[World]:
    """A migrated database with `bank` and exchange `name` of `type_` feeding it from `url` (with the type's other
    `options`), and `credentials` (by default the stand-in's `user` and `password`)."""
    if credentials is None:
        credentials = {"user": standin.user, "password": standin.password}
    engine = create_engine(database_url)
    await upgrade(engine)
    banks = BankStore(engine)
    await banks.create(bank)
    stores = ExchangeStore(engine, banks)
    await stores.add(name, type_, bank, {"url": url, **(options or {})}, carries=carries)
    made = World(standin, url, stores, keys_dir, Clock(now), name, bank)
    made.credentials(credentials)
    try:
        yield made
    finally:
        await engine.dispose()


def cli_invoker(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """`labeler …` in this process against `settings`' database and keys, private addresses allowed; the
    returned function takes the arguments and, as `input`, what is typed at prompts."""
    for name in list(os.environ):
        if name.startswith("LABELER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LABELER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LABELER_KEYS_DIR", str(settings.keys_dir))
    monkeypatch.setenv("LABELER_ALLOW_PRIVATE_FETCH", "true")
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(cli, list(args), input=input, catch_exceptions=False)

    return invoke


def assert_matched_over_upload_api(settings: Settings, value: str, expected: list[tuple[str, str]]) -> None:
    """A labeler started on `settings` (upload token `tok`) answers `/api/v1/match` for `value` with the
    (bank, external id) pairs `expected` within seconds, as the bank change log makes new entries matchable."""

    async def matched() -> None:
        labeler = Labeler(settings)
        await labeler.start()
        try:
            async with serve_labeler(labeler) as live, httpx.AsyncClient(base_url=live.url) as client:

                async def found() -> bool:
                    response = await client.post(
                        "/api/v1/match", json={"hash": value}, headers={"authorization": "Bearer tok"}
                    )
                    assert response.status_code == 200, response.text
                    return [(m["bank"], m["external_id"]) for m in response.json()["matches"]] == expected

                await eventually(found, within=5, what="a fetched hash matched over the upload API")
        finally:
            await labeler.aclose()

    asyncio.run(matched())


def check_cli_lifecycle(
    invoke: Callable[..., Result],
    settings: Settings,
    *,
    add: Sequence[str],
    typed: str,
    fetched: str,
    listed: str,
    match: tuple[str, list[tuple[str, str]]],
    wrong: Sequence[str],
    refused: str,
    secrets: Sequence[str],
) -> None:
    """`labeler exchange add` with arguments `add` (NAME first, the secret `typed` at its prompt) writes the
    credentials 0600 in a 0700 folder, `exchange fetch NAME` says `fetched`, `exchange list` says `listed`, a fetched
    hash (`match`: the hash, the bank and external id pairs expected) is matchable over the upload API, and `exchange
    remove` deletes the credentials; added again with `wrong` (everything after `add`'s NAME), a fetch fails saying
    `refused`. None of `secrets` is ever printed."""
    name = add[0]
    added = invoke("exchange", "add", *add, input=f"{typed}\n")
    assert added.exit_code == 0, added.output
    path = credentials_path(settings.keys_dir, name)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    done = invoke("exchange", "fetch", name)
    assert done.exit_code == 0 and fetched in done.output, done.output
    shown = invoke("exchange", "list")
    assert listed in shown.output
    assert_matched_over_upload_api(settings, *match)
    removed = invoke("exchange", "remove", name)
    assert removed.exit_code == 0 and not path.exists()
    assert "no exchanges" in invoke("exchange", "list").output
    assert invoke("exchange", "add", name, *wrong).exit_code == 0
    failed = invoke("exchange", "fetch", name)
    assert failed.exit_code == 1 and refused in failed.output, failed.output
    printed = added.output + done.output + shown.output + failed.output + invoke("exchange", "list").output
    assert not [secret for secret in secrets if secret in printed]


async def settled(labeler: Labeler, action: Action) -> Action:
    """`action` as it stands once no attempt at it is running. A decision returns its actions after its own
    attempt, but the outbox's runner may take a row first (it is committed before the attempt), and then the
    decision returns it `running`; this waits for the runner's outcome."""
    latest = action

    async def idle() -> bool:
        nonlocal latest
        row = await labeler.pipeline.actioner.outbox.get(action.id)
        assert row is not None
        latest = row
        return row.state != "running"

    await eventually(idle, within=10, what=f"action {action.id} attempted")
    return latest
