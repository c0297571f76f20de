"""A fetch never pages for ever. Every exchange type stops a fetch when its exchange hands back a paging link (or
token, or checkpoint) it gave before in the same fetch, a paging bug that would otherwise have the fetch read the
same pages for ever; once the exchange pages properly again, the next fetch resumes from the last page applied and
ends, nothing banked twice. And a fetch reads at most its page budget (`exchange_fetch_pages`), however long the
exchange goes on, so one exchange never keeps a process from fetching the others: the next fetch goes on from
there, after the exchanges already due."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pipeline.corpus import random_hashes
from support.server import serve_in_thread

from labeler.exchanges.fetch import http_client
from labeler.exchanges.schedule import fetch_leased
from labeler.exchanges.types import exchange_type

from .harness import World, cli_invoker
from .harness import world as exchange_world
from .ncmec_standin import Entry, NcmecStandin
from .stopncii_standin import Record as StopNciiRecord
from .stopncii_standin import StopNciiStandin
from .tat_standin import Record as TatRecord
from .tat_standin import TatStandin
from .threatexchange_standin import VERSION, Descriptor, Indicator, ThreatExchangeStandin

H = random_hashes(5, seed=77)  # five entries: three pages of two
T0 = 1_700_000_000
KINDS = ["ncmec", "stopncii", "tat", "threatexchange"]


def _standin(kind: str, hashes: list[str], *, stuck: bool = False) -> tuple[Any, dict[str, str], dict[str, str], str]:
    """A stand-in of exchange type `kind` holding `hashes`, two a page (paging in a circle when `stuck`), its
    credentials, the exchange's other options, and what follows the served URL in its base URL."""
    if kind == "ncmec":
        entries = [Entry(f"image{i}", T0 + i, {"pdq": h}) for i, h in enumerate(hashes)]
        ncmec = NcmecStandin(entries=entries, stuck={3} if stuck else set())
        return ncmec, {"user": ncmec.user, "password": ncmec.password}, {}, ""
    if kind == "stopncii":
        stopncii = StopNciiStandin(records=[StopNciiRecord(h, T0 + i) for i, h in enumerate(hashes)], stuck=stuck)
        keys = {"subscription_key": stopncii.subscription_key, "fetch_key": stopncii.fetch_key}
        return stopncii, keys, {}, "/v1"
    if kind == "tat":
        tat = TatStandin(records=[TatRecord(100 + i, h, T0 + i) for i, h in enumerate(hashes)], stuck=stuck)
        return tat, {"user": tat.user, "password": tat.password}, {}, ""
    shared = [Indicator(str(1000 + i), "HASH_PDQ", h, T0 + i, [Descriptor(str(2000 + i), "5550001234")])
              for i, h in enumerate(hashes)]  # fmt: skip
    te = ThreatExchangeStandin(indicators=shared, stuck=stuck)
    return te, {"token": te.token}, {"privacy_group": te.privacy_group}, VERSION


@asynccontextmanager
async def _world(kind: str, database_url: str, keys: Path, *, stuck: bool = False) -> AsyncIterator[World]:
    """Exchange `x` of type `kind` holding H, served on loopback, feeding bank B."""
    standin, credentials, options, path = _standin(kind, H, stuck=stuck)
    with serve_in_thread(standin.app()) as server:
        async with exchange_world(
            database_url, keys, standin=standin, url=server.url + path, type_=kind,
            carries=exchange_type(kind).signal_types, credentials=credentials, options=options, name="x", bank="B",
            now=T0 + 100,
        ) as world:  # fmt: skip
            yield world


@pytest.mark.parametrize("kind", KINDS)
async def test_a_paging_link_given_again_stops_the_fetch_and_the_next_resumes(
    kind: str, database_url: str, tmp_path: Path
) -> None:
    async with _world(kind, database_url, tmp_path / "keys", stuck=True) as world:
        standin = world.standin
        stopped = await world.fetch()
        assert stopped.error is not None and "a paging link it had given before" in stopped.error, stopped
        assert not stopped.complete and 2 <= stopped.added < len(H)
        asked = len(standin.requests)
        assert asked <= 4  # the pages before the repeat, not the same page for ever
        standin.stuck = set() if kind == "ncmec" else False
        resumed = await world.fetch()
        assert (resumed.error, resumed.complete) == (None, True)
        assert stopped.added + resumed.added == len(H) and set(await world.banked()) == set(H)
        assert len(standin.requests) - asked <= 3  # from the last page applied, not from the start


@pytest.mark.parametrize("kind", KINDS)
async def test_a_fetch_reads_at_most_its_page_budget_and_the_next_goes_on(
    kind: str, database_url: str, tmp_path: Path
) -> None:
    """One page a fetch: each ends checkpointed, with more to read and no error, and the next reads the page after
    it, never one again: as many requests as pages, every entry banked once."""
    async with _world(kind, database_url, tmp_path / "keys") as world:
        first = await world.fetch(max_pages=1)
        assert (first.pages, first.more, first.complete, first.error) == (1, True, False, None)
        assert 0 < first.added < len(H) and len(await world.banked()) == first.added
        exchange = await world.stores.get("x")
        assert exchange.checkpoint is not None and (exchange.fetch_errors, exchange.last_success_at) == (0, None)
        rounds = [first]
        while not rounds[-1].complete and len(rounds) <= len(H):
            rounds.append(await world.fetch(max_pages=1))
        assert rounds[-1].complete and not rounds[-1].more and len(rounds) > 2
        assert [(r.pages, r.error) for r in rounds] == [(1, None)] * len(rounds)
        assert sum(r.added for r in rounds) == len(H) and set(await world.banked()) == set(H)
        assert len(world.standin.requests) == len(rounds)


async def test_an_exchange_stopped_at_its_budget_is_fetched_again_after_those_already_due(
    database_url: str, tmp_path: Path
) -> None:
    """`x` (three pages) fetched one page at a time, its first fetch on demand, and `small` (one page), never
    fetched and so due the longest: small's turn comes before x's second page, and x goes on at once after it,
    not an interval later."""
    small, credentials, _options, _path = _standin("ncmec", H[:1])
    carries = exchange_type("ncmec").signal_types
    async with _world("ncmec", database_url, tmp_path / "keys") as world:
        with serve_in_thread(small.app()) as server:
            await world.stores.banks.create("SMALL")
            await world.stores.add("small", "ncmec", "SMALL", {"url": server.url}, carries=carries)
            world.credentials(credentials, name="small")
            order: list[str] = []
            async with http_client(allow_private=True) as http:
                for name in ["x", *[None] * 5]:
                    report = await fetch_leased(
                        world.stores, owner="here/1", keys_dir=world.keys_dir, http=http, name=name, interval=3600,
                        max_pages=1, clock=world.clock,
                    )  # fmt: skip
                    if report is None:
                        break
                    order.append(f"{report.name}:{'done' if report.complete else 'more'}")
    assert order == ["x:more", "small:done", "x:more", "x:done"]


def test_exchange_fetch_reads_its_page_budget_and_says_there_is_more(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`labeler exchange fetch` reads `[pipeline] exchange_fetch_pages` pages, says more is to come and succeeds;
    fetched again it goes on; a budget of 0 is refused as a setting."""
    standin, credentials, _options, _path = _standin("tat", H)
    invoke = cli_invoker(make_settings(allow_private_fetch=True), monkeypatch)
    config = tmp_path / "labeler.toml"
    monkeypatch.setenv("LABELER_CONFIG", str(config))
    config.write_text("[pipeline]\nexchange_fetch_pages = 1\n")
    with serve_in_thread(standin.app()) as server:
        assert invoke("bank", "create", "B").exit_code == 0
        added = invoke("exchange", "add", "x", "--type", "tat", "--bank", "B", "--url", server.url,
                       "--user", credentials["user"], "--password", credentials["password"])  # fmt: skip
        assert added.exit_code == 0, added.output
        said = []
        for _ in H:
            fetched = invoke("exchange", "fetch", "x")
            assert fetched.exit_code == 0 and "x: 1 pages" in fetched.output, fetched.output
            said.append("more to fetch" in fetched.output)
            if not said[-1]:
                break
        assert said == [True, True, False] and len(standin.requests) == 3
        config.write_text("[pipeline]\nexchange_fetch_pages = 0\n")
        refused = invoke("exchange", "fetch", "x")
        assert refused.exit_code == 1 and "exchange_fetch_pages must be ≥ 1" in refused.output, refused.output
