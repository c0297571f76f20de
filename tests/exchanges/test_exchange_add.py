"""Adding an exchange whose name is taken is refused by the database itself (the name is the table's key), so of
several processes adding one name at once exactly one adds it and the others are told why; `labeler exchange add`
asks that same insert, rolled back, before it prompts for any secret."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
import sqlalchemy as sa
from pipeline.harness import eventually
from sqlalchemy.ext.asyncio import AsyncConnection

from labeler.exchanges.credentials import credentials_path
from labeler.exchanges.errors import ExchangeError
from labeler.exchanges.store import Exchange, ExchangeStore
from labeler.exchanges.tat import TYPE as TAT
from labeler.pipeline.banks import BankStore
from labeler.store.engine import create_engine, is_sqlite
from labeler.store.migrate import upgrade

from .harness import cli_invoker


async def test_one_name_added_by_many_at_once_is_added_once(database_url: str) -> None:
    """On PostgreSQL the adds are held at their insert (a SHARE lock lets them read but not write) until all of
    them wait there: each has looked and found the name free, so only the key can refuse the others."""
    engine = create_engine(database_url)
    await upgrade(engine)
    banks = BankStore(engine)
    await banks.create("B")
    store = ExchangeStore(engine, banks)
    racers = 8
    try:
        async with contextlib.AsyncExitStack() as held:
            if not is_sqlite(engine):
                gate = await held.enter_async_context(engine.begin())
                await gate.execute(sa.text("LOCK TABLE exchanges IN SHARE MODE"))
            adding = asyncio.gather(
                *(store.add("x", "tat", "B", {"url": f"https://tat{i}.example"}, carries=TAT.signal_types)
                  for i in range(racers)),
                return_exceptions=True,
            )  # fmt: skip
            if not is_sqlite(engine):
                await eventually(lambda: _waiting_inserts(gate, racers), within=30, what="every add at its insert")
        tried = await adding
        added = [t for t in tried if isinstance(t, Exchange)]
        refused = [t for t in tried if not isinstance(t, Exchange)]
        assert len(added) == 1, tried
        assert [(type(t), str(t)) for t in refused] == [(ExchangeError, "exchange 'x' already exists")] * (racers - 1)
        assert [e.options for e in await store.all()] == [added[0].options]
        with pytest.raises(ExchangeError, match="exchange 'x' already exists"):
            await store.check_new("x", "tat", "B", carries=TAT.signal_types)
        await store.check_new("y", "tat", "B", carries=TAT.signal_types)  # free: checked, not added
        assert [e.name for e in await store.all()] == ["x"]
    finally:
        await engine.dispose()


async def _waiting_inserts(conn: AsyncConnection, count: int) -> bool:
    query = "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'exchanges'::regclass"
    return int((await conn.execute(sa.text(query))).scalar_one()) >= count


def test_cli_refuses_a_taken_name_before_prompting(make_settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(allow_private_fetch=True)
    invoke = cli_invoker(settings, monkeypatch)
    assert invoke("bank", "create", "B").exit_code == 0
    add = ("exchange", "add", "x", "--type", "tat", "--bank", "B", "--user", "u")
    assert invoke(*add, input="secret\n").exit_code == 0
    again = invoke(*add)  # nothing to type: a prompt would abort instead
    assert again.exit_code == 1 and "exchange 'x' already exists" in again.output, again.output
    assert "password" not in again.output.lower()


@pytest.mark.parametrize("blocked", ["exchanges", "exchanges/x.json"])
def test_cli_add_is_undone_whole_when_its_credentials_cannot_be_written(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch, blocked: str
) -> None:
    """A directory where the credentials folder (the file cannot be made) or file (the written file cannot be
    moved in place) goes, which stops root too: the add fails saying so, leaves no exchange row and no file of
    secrets behind, so the same add works once the obstacle is gone."""
    settings = make_settings(allow_private_fetch=True)
    invoke = cli_invoker(settings, monkeypatch)
    assert invoke("bank", "create", "B").exit_code == 0
    obstacle = settings.keys_dir / blocked
    if blocked == "exchanges":
        obstacle.parent.mkdir(parents=True, exist_ok=True)
        obstacle.write_text("not a folder")
    else:
        obstacle.mkdir(parents=True)
    add = ("exchange", "add", "x", "--type", "tat", "--bank", "B", "--user", "u", "--password", "secret")
    failed = invoke(*add)
    assert failed.exit_code == 1 and "cannot write the credentials of exchange 'x'" in failed.output, failed.output
    assert "secret" not in failed.output
    assert "no exchanges" in invoke("exchange", "list").output
    left = [p for p in settings.keys_dir.rglob("*") if p.is_file() and p != obstacle]
    assert not [p for p in left if "secret" in p.read_text(errors="replace")], left
    (obstacle.unlink if obstacle.is_file() else obstacle.rmdir)()
    added = invoke(*add)
    assert added.exit_code == 0, added.output
    assert json.loads(credentials_path(settings.keys_dir, "x").read_text()) == {"user": "u", "password": "secret"}
