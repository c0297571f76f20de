"""NCMEC hash sharing filling a bank, against a stand-in speaking NCMEC's wire format over real HTTP on loopback:
first and incremental fetches, deletions and updates, malformed pages and entries, auth failures, an outage
mid-fetch, and a fetched hash matched through the upload API."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from pipeline.corpus import random_hashes
from pipeline.harness import eventually
from pipeline.test_metrics_scrape import samples, value
from support.server import serve_in_thread
from threatexchange.exchanges.clients.ncmec import hash_api

from labeler.config import Settings
from labeler.exchanges.credentials import Credentials, write_credentials
from labeler.exchanges.doctor import exchange_findings
from labeler.exchanges.errors import ExchangeError
from labeler.exchanges.fetch import FetchReport, http_client
from labeler.exchanges.ncmec import TYPE as NCMEC
from labeler.exchanges.ncmec import NcmecClient, pages
from labeler.exchanges.schedule import fetch_leased
from labeler.exchanges.store import entry_note
from labeler.pipeline.banks import EntryInput
from labeler.protocol import syntax
from labeler.service import Labeler
from labeler.store.exchange_schema import exchange_entries, exchanges
from labeler.testing import serve_labeler

from .harness import World, check_cli_lifecycle, cli_invoker
from .harness import world as exchange_world
from .ncmec_standin import DATE, Entry, NcmecStandin

H = random_hashes(8, seed=21)
T0 = 1_700_000_000  # the stand-in's entries were changed around then
MD5 = "b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1"


@pytest.fixture
def standin() -> Iterator[tuple[NcmecStandin, str]]:
    standin = NcmecStandin(
        entries=[
            Entry("image1", T0 + 10, {"md5": "a1" * 16, "pdq": H[0], "sha1": "a1" * 20}),
            Entry("image2", T0 + 20, {"pdq": H[1]}),
            Entry("image3", T0 + 30, {"pdq": H[2]}),
            Entry("video1", T0 + 40, {"md5": MD5}, kind="video"),
            Entry("image4", T0 + 50, {"pdq": H[3]}),
        ]
    )
    with serve_in_thread(standin.app()) as server:
        yield standin, server.url


@pytest.fixture
async def world(standin: tuple[NcmecStandin, str], database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    server, url = standin
    async with exchange_world(
        database_url, tmp_path / "keys", standin=server, url=url, type_="ncmec", carries=NCMEC.signal_types,
        credentials={"user": server.user, "password": server.password}, name="nc", bank="NCMEC", now=T0 + 100,
    ) as made:  # fmt: skip
        yield made


async def test_first_fetch_pages_through_and_records_each_entry(world: World) -> None:
    report = await world.fetch()
    assert (report.error, report.complete, report.pages, report.added, report.skipped) == (None, True, 3, 4, [])
    note = entry_note("nc")
    assert await world.banked() == {
        H[0]: ("42-image1", note),
        H[1]: ("42-image2", note),
        H[2]: ("42-image3", note),
        H[3]: ("42-image4", note),
    }  # fmt: skip  (video1 carries only an MD5: not for a PDQ bank)
    pages = world.standin.requests
    assert [q.get("start") for q in pages] == [None, "3", "5"]
    assert (pages[0]["from"], pages[0]["to"]) == ("1970-01-01T00:00:00Z", "2023-11-14T22:14:55Z")  # T0 + 95
    assert all((q["from"], q["to"]) == (pages[0]["from"], pages[0]["to"]) for q in pages)  # the window's own
    async with world.stores.engine.connect() as conn:
        recorded = (await conn.execute(sa.select(exchange_entries).order_by(exchange_entries.c.remote_id))).all()
    assert [(r.exchange, r.remote_id, r.value) for r in recorded] == [
        ("nc", "42-image1", H[0]), ("nc", "42-image2", H[1]), ("nc", "42-image3", H[2]), ("nc", "42-image4", H[3])
    ]  # fmt: skip
    assert all(r.fetched_at for r in recorded)
    [exchange] = await world.stores.all()
    assert exchange.last_success_at and exchange.fetch_errors == 0 and exchange.entries == 4
    assert exchange.checkpoint == {"from": T0 + 95}  # the window ended 5 s before "now"


async def test_incremental_fetch_reads_only_the_new_window(world: World) -> None:
    await world.fetch()
    world.standin.entries.append(Entry("image5", T0 + 200, {"pdq": H[4]}))
    world.standin.requests.clear()
    world.clock.now = T0 + 300
    report = await world.fetch()
    assert (report.error, report.pages, report.added) == (None, 1, 1)
    [query] = world.standin.requests
    assert (query["from"], query["to"]) == ("2023-11-14T22:14:55Z", "2023-11-14T22:18:15Z")  # T0+95, T0+295
    assert H[4] in await world.banked() and len(await world.banked()) == 5


async def test_deleted_and_updated_entries_change_the_bank(world: World) -> None:
    await world.fetch()
    entries = {e.id: e for e in world.standin.entries}
    entries["image2"].deleted, entries["image2"].changed = True, T0 + 200
    entries["image3"].fingerprints, entries["image3"].changed = {"pdq": H[5]}, T0 + 210
    world.clock.now = T0 + 300
    report = await world.fetch()
    assert (report.error, report.added, report.removed) == (None, 1, 2)
    banked = await world.banked()
    assert set(banked) == {H[0], H[3], H[5]} and banked[H[5]][0] == "42-image3"
    [exchange] = await world.stores.all()
    assert exchange.entries == 3


async def test_a_hash_also_imported_by_hand_stays_when_the_exchange_deletes_it(world: World) -> None:
    await world.stores.banks.add_entries("NCMEC", [EntryInput(H[1], external_id="ours")])
    await world.fetch()
    entries = {e.id: e for e in world.standin.entries}
    entries["image2"].deleted, entries["image2"].changed = True, T0 + 200
    world.clock.now = T0 + 300
    assert (await world.fetch()).removed == 0
    assert (await world.banked())[H[1]] == ("ours", None)


async def test_unreadable_entries_are_skipped_and_logged(world: World, caplog: Any) -> None:
    world.standin.entries[0].broken = True  # image1 without its <id>
    report = await world.fetch()
    assert report.error is None and report.complete
    assert set(await world.banked()) == {H[1], H[2], H[3]}
    assert "skipped an NCMEC entry" in caplog.text


@pytest.mark.parametrize(("start", "read_before"), [(1, 0), (3, 2)])  # a window's first page, a later one
async def test_a_malformed_page_is_read_again_by_the_next_fetch_and_nothing_is_lost(
    world: World, start: int, read_before: int
) -> None:
    world.standin.malformed = {start}
    report = await world.fetch()
    assert report.error is not None and "is malformed" in report.error and "will retry" in report.error
    assert not report.complete and report.pages == read_before // 2
    assert len(await world.banked()) == read_before
    world.standin.malformed = set()
    assert (await world.fetch()).added == 4 - read_before
    assert (await world.stores.get("nc")).unreadable == 0


async def test_a_later_page_that_stays_malformed_is_skipped_by_its_paging_after_retries(world: World) -> None:
    world.standin.malformed = {3}  # image3 and image4's page
    report = await world.retried_then_skipped()
    assert (report.error, report.complete) == (None, True)
    assert len(report.skipped) == 1 and "skipped a malformed NCMEC page /v2/entries?" in report.skipped[0]
    assert "start=3" in report.skipped[0]
    assert set(await world.banked()) == {H[0], H[1]}
    [exchange] = await world.stores.all()
    assert (exchange.fetch_errors, exchange.last_error, exchange.unreadable) == (4, None, 0)


async def test_an_entry_that_keeps_its_windows_first_page_unreadable_costs_only_its_second(world: World) -> None:
    world.standin.entries[1].poisoned = True  # image2 (T0 + 20): every page holding it is cut short
    report = await world.retried_then_skipped()
    assert (report.error, report.complete) == (None, True)
    when = datetime.fromtimestamp(T0 + 20, UTC).strftime(DATE)
    after = datetime.fromtimestamp(T0 + 21, UTC).strftime(DATE)
    [skipped] = report.skipped
    assert skipped.startswith(f"skipped NCMEC's changes from {when} to {after}: not XML"), skipped
    assert set(await world.banked()) == {H[0], H[2], H[3]}  # image2's H[1] alone is lost
    assert (await world.stores.get("nc")).checkpoint == {"from": T0 + 95}


async def test_the_password_is_kept_out_of_logs_and_the_database(world: World) -> None:
    basic = base64.b64encode(f"{world.standin.user}:{world.standin.password}".encode()).decode()
    await world.fetch_keeping_secrets(lambda: [world.standin.password, basic])


def test_pytx_client_reads_the_standin(standin: tuple[NcmecStandin, str]) -> None:
    """python-threatexchange's own client (`get_entries_iter`, following `paging/next`; an upvote) reads from and
    writes to the stand-in what ours does, so the stand-in speaks the format pytx expects."""
    server, url = standin
    client = hash_api.NCMECHashAPI(server.user, server.password, hash_api.NCMECEnvironment.test_Industry)
    client._base_url = url  # pytx's environments are fixed hosts; this is where it keeps the one in use
    read = list(client.get_entries_iter(start_timestamp=T0, end_timestamp=T0 + 100))
    assert len(read) == 3 and read[-1].next == ""
    entries = {u.id: (u.member_id, u.deleted, u.fingerprints) for page in read for u in page.updates}
    assert entries == {e.id: (e.member, e.deleted, e.fingerprints) for e in server.entries}
    client.submit_upvote(42, "image2", hash_api.FingerprintType.pdq)
    assert [(v.member, v.entry, v.fingerprint, v.vote) for v in server.votes] == [(42, "image2", "PDQ", "affirmative")]


async def test_an_auth_failure_is_a_clear_error_without_the_password(world: World) -> None:
    write_credentials(world.keys_dir, "nc", Credentials({"user": world.standin.user, "password": "not-the-password"}))
    report = await world.fetch()
    assert report.error is not None and "refused the credentials (HTTP 401)" in report.error
    assert "not-the-password" not in report.error
    [exchange] = await world.stores.all()
    assert exchange.fetch_errors == 1 and exchange.last_error == report.error and exchange.checkpoint is None
    assert await world.banked() == {}


async def test_an_outage_mid_fetch_resumes_at_the_next_page_without_duplicates(world: World) -> None:
    world.standin.fail_after = 1  # the first page, then 503s
    report = await world.fetch()
    assert report.error is not None and "HTTP 503" in report.error and report.pages == 1
    [exchange] = await world.stores.all()
    assert exchange.checkpoint is not None and "start=3" in exchange.checkpoint["next"]
    assert set(await world.banked()) == {H[0], H[1]}
    world.standin.fail_after = None
    world.standin.requests.clear()
    world.clock.now += 60  # later, within NCMEC's 12 hours for a paging link
    report = await world.fetch()
    assert (report.error, report.pages, report.added) == (None, 3, 2)
    resumed, last, caught_up = world.standin.requests
    assert (resumed.get("start"), last.get("start"), caught_up.get("start")) == ("3", "5", None)
    assert (caught_up["from"], caught_up["to"]) == (
        resumed["to"],
        datetime.fromtimestamp(int(world.clock.now) - 5, UTC).strftime(DATE),
    )  # then on to now
    assert len(await world.banked()) == 4
    async with world.stores.engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(exchange_entries))).scalar_one() == 4


async def test_a_long_history_is_read_in_windows_narrowed_to_what_they_list(world: World) -> None:
    """A first fetch over years of entries: each window lists at most `window_entries`, the checkpoint moves to a
    window's end once it is read, and a fetch stopped part way resumes at that window without losing any entry."""
    world.standin.entries = [Entry(f"e{i:03}", T0 + 100 * i, {"pdq": "00" * 32}) for i in range(40)]
    world.clock.now = T0 + 4100
    client = NcmecClient(world.url, Credentials({"user": world.standin.user, "password": world.standin.password}),
                         http := http_client(allow_private=True))  # fmt: skip
    async with http:
        seen: set[str] = set()
        checkpoints: list[dict[str, Any]] = []
        async for page in pages(client, None, clock=world.clock, window_entries=6):
            seen |= {u.remote_id for u in page.updates}
            checkpoints.append(page.checkpoint)
            if len(checkpoints) == 12:
                break  # the process dies here
        resumed_from = next(c for c in reversed(checkpoints) if "next" not in c)  # the last window read whole
        async for page in pages(client, resumed_from, clock=world.clock, window_entries=6):
            seen |= {u.remote_id for u in page.updates}
            last = page
    assert seen == {f"{e.member}-{e.id}" for e in world.standin.entries}
    assert last.last and last.checkpoint == {"from": T0 + 4095}
    windows = {(q["from"], q["to"]) for q in world.standin.requests}
    listed = [sum(1 for e in world.standin.entries if _in(e.changed, w)) for w in windows]
    read_through = [n for w, n in zip(windows, listed, strict=True) if _paged(world.standin.requests, w)]
    assert read_through and max(read_through) <= 6  # no window was paged through that listed more
    starts = [c["from"] for c in checkpoints if "next" not in c]
    assert starts == sorted(starts) and len(starts) > 1  # progress lasts window by window


def _in(changed: int, window: tuple[str, str]) -> bool:
    start, end = (datetime.strptime(t, DATE).replace(tzinfo=UTC).timestamp() for t in window)
    return start <= changed < end


def _paged(requests: list[dict[str, str]], window: tuple[str, str]) -> bool:
    """Whether the fetch read past a window's first page."""
    return any((q["from"], q["to"]) == window and "start" in q for q in requests)


async def test_a_window_listing_too_much_even_at_one_second_stops_the_fetch_with_an_error(
    world: World, caplog: Any
) -> None:
    """A server stating a billion entries for every window, however narrow: the fetch narrows to one second and
    stops there with a logged, counted error, rather than paging through its endless pages or crawling a second at
    a time; nothing moves, and once its counts are honest the next fetch reads everything."""
    world.standin.overstated = 10**9
    stopped = await world.fetch()
    assert stopped.error is not None and "more than a window may list" in stopped.error, stopped
    assert (stopped.pages, stopped.complete, stopped.more) == (0, False, False)
    assert len(world.standin.requests) <= 32  # each narrowing at least halves the window: at most 31 of them
    window = [datetime.strptime(world.standin.requests[-1][k], DATE).replace(tzinfo=UTC) for k in ("from", "to")]
    assert (window[1] - window[0]).total_seconds() == 1  # the floor
    assert "more than a window may list" in caplog.text
    exchange = await world.stores.get("nc")
    assert (exchange.checkpoint, exchange.fetch_errors) == (None, 1) and await world.banked() == {}
    world.standin.overstated = None
    resumed = await world.fetch()
    assert (resumed.error, resumed.complete, resumed.added) == (None, True, 4)


async def test_a_stale_paging_link_restarts_its_window(world: World) -> None:
    world.standin.fail_after = 1
    await world.fetch()
    world.standin.fail_after = None
    world.standin.requests.clear()
    world.clock.now += 13 * 3600
    report = await world.fetch()
    assert report.error is None and report.added == 2
    assert world.standin.requests[0].get("start") is None  # the window again, from its first page
    assert world.standin.requests[0]["from"] == "1970-01-01T00:00:00Z"


async def test_an_md5_bank_takes_ncmecs_md5s(world: World) -> None:
    await world.stores.banks.create("NCMEC_MD5", signal_type="md5")
    await world.stores.add("nc-md5", "ncmec", "NCMEC_MD5", {"url": world.url}, carries=NCMEC.signal_types)
    write_credentials(
        world.keys_dir, "nc-md5", Credentials({"user": world.standin.user, "password": world.standin.password})
    )
    report = await world.fetch("nc-md5")
    assert (report.error, report.added) == (None, 2)
    rows = await world.stores.banks.signal_rows("NCMEC_MD5")
    assert sorted((signal, row[0], row[3]) for signal, row in rows) == [
        ("md5", "a1" * 16, "42-image1"),
        ("md5", MD5, "42-video1"),
    ]


def test_cli_add_fetch_list_remove_and_a_fetched_hash_matches_over_the_upload_api(
    upload_settings: Settings, standin: tuple[NcmecStandin, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    invoke = cli_invoker(upload_settings, monkeypatch)
    server, url = standin
    assert invoke("bank", "create", "NCMEC").exit_code == 0
    unknown = invoke("exchange", "add", "x", "--type", "nowhere", "--bank", "NCMEC", "--user", "u", "--password", "p")
    assert unknown.exit_code != 0 and "'nowhere' is not one of" in unknown.output
    threatexchange_options = ["--privacy-group", "1", "--token", "1|s"]
    others = invoke("exchange", "add", "x", "--type", "ncmec", "--bank", "NCMEC", "--user", "u", "--password", "p",
                    *threatexchange_options)  # fmt: skip
    assert others.exit_code != 0 and "ncmec takes no --privacy-group, --token" in others.output
    no_bank = invoke("exchange", "add", "x", "--type", "ncmec", "--bank", "NOWHERE", "--user", "u")
    assert no_bank.exit_code != 0 and "NOWHERE" in no_bank.output and "password" not in no_bank.output  # not asked
    nowhere = invoke("exchange", "add", "x", "--type", "ncmec", "--bank", "NCMEC", "--environment", "Nowhere",
                     "--user", "u", "--password", "p")  # fmt: skip
    assert nowhere.exit_code != 0 and "--environment must be one of" in nowhere.output and "NGO" in nowhere.output
    check_cli_lifecycle(
        invoke, upload_settings, add=["nc", "--type", "ncmec", "--bank", "NCMEC", "--url", url, "--user", server.user],
        typed=server.password, fetched="nc: 3 pages, 4 added, 0 removed, 0 skipped",
        listed=f"nc\tncmec\tNCMEC\t{url}\t4 entries", match=(H[2], [("NCMEC", "42-image3")]),
        wrong=["--type", "ncmec", "--bank", "NCMEC", "--url", url, "--user", "u", "--password", "not-the-password"],
        refused="refused the credentials (HTTP 401)", secrets=[server.password, "not-the-password"],
    )  # fmt: skip


async def test_one_process_at_a_time_fetches_an_exchange(world: World) -> None:
    assert await world.stores.claim("elsewhere/1", world.clock.now, 300, name="nc") == "nc"
    async with http_client(allow_private=True) as http:

        async def fetch() -> FetchReport | None:
            return await fetch_leased(
                world.stores, owner="here/2", keys_dir=world.keys_dir, http=http, name="nc", max_pages=1000,
                clock=world.clock,
            )  # fmt: skip

        assert await fetch() is None and world.standin.requests == []
        world.clock.now += 301  # the other process died: its lease expired
        report = await fetch()
        assert report is not None and report.added == 4
    assert await world.stores.claim("elsewhere/1", world.clock.now, 300, name="nc") == "nc"  # released


async def test_an_exchange_being_fetched_is_not_removed_under_the_fetch(world: World) -> None:
    assert await world.stores.claim("elsewhere/1", world.clock.now, 300, name="nc") == "nc"
    with pytest.raises(ExchangeError, match="is being fetched by elsewhere/1"):
        await world.stores.remove("nc", now=world.clock.now)
    assert await world.stores.remove("nc", now=world.clock.now + 301) == 0  # that process died: its lease expired


async def test_workers_fetch_due_exchanges_on_schedule_and_metrics_show_them(
    make_settings: Any, standin: tuple[NcmecStandin, str]
) -> None:
    """The scheduled fetches' figures as a scraper reads them, `GET /metrics` over HTTP: per exchange and bank, the
    entries, when a fetch last reached the end and how many stopped early (one exchange's URL answers only 404)."""
    server, url = standin
    settings: Settings = make_settings(
        allow_private_fetch=True, extra={"pipeline": {"exchange_fetch_seconds": 0.2, "bank_poll_seconds": 0.1}}
    )
    labeler = Labeler(settings)
    await labeler.start(workers=1)
    try:
        store = labeler.exchanges.store
        for bank in ("NCMEC", "GONE"):
            await store.banks.create(bank)
        write_credentials(settings.keys_dir, "nc", Credentials({"user": server.user, "password": server.password}))
        write_credentials(settings.keys_dir, "bad", Credentials({"user": server.user, "password": server.password}))
        await store.add("nc", "ncmec", "NCMEC", {"url": url}, carries=NCMEC.signal_types)
        await store.add("bad", "ncmec", "GONE", {"url": f"{url}/gone"}, carries=NCMEC.signal_types)
        good = {"bank": "NCMEC", "exchange": "nc", "type": "ncmec"}
        bad = {"bank": "GONE", "exchange": "bad", "type": "ncmec"}

        async def fetched_twice() -> bool:
            return len(server.requests) > 3  # the first fetch's three pages, then the next round's window

        await eventually(fetched_twice, within=10, what="two scheduled fetches")
        assert server.requests[3]["from"] == server.requests[0]["to"]  # the next window starts where one ended

        async with serve_labeler(labeler) as live, httpx.AsyncClient(base_url=live.url) as client:

            async def scrape() -> dict[Any, float]:
                response = await client.get("/metrics")
                assert response.status_code == 200
                return samples(response.text)

            async def both_shown() -> bool:
                found = await scrape()
                entries = value(found, "labeler_exchange_entries", **good) == 4
                return entries and value(found, "labeler_exchange_fetch_errors_total", **bad) > 0

            await eventually(both_shown, within=10, what="both exchanges on /metrics")
            shown = await scrape()
        good_key, bad_key = (tuple(sorted(labels.items())) for labels in (good, bad))
        assert shown[("labeler_exchange_fetch_errors_total", good_key)] == 0
        assert T0 < shown[("labeler_exchange_last_success_timestamp_seconds", good_key)] <= time.time()
        assert shown[("labeler_exchange_entries", bad_key)] == 0
        assert ("labeler_exchange_last_success_timestamp_seconds", bad_key) not in shown  # never reached the end
        [hit] = await labeler.pipeline.matcher.lookup(H[0])
        assert (hit.bank, hit.external_id) == ("NCMEC", "42-image1")
    finally:
        await labeler.aclose()


async def test_doctor_warns_of_an_exchange_not_fetched_for_two_rounds(world: World, make_settings: Any) -> None:
    settings: Settings = make_settings(extra={"pipeline": {"exchange_fetch_seconds": 3600}})
    [never] = await exchange_findings(settings)
    assert (never.check, never.status) == ("exchanges", "ok") and "never fetched fully" in never.message
    await world.fetch()
    [fresh] = await exchange_findings(settings)
    assert fresh.status == "ok" and "4 entries" in fresh.message
    [stale] = await exchange_findings(settings, clock=lambda: time.time() + 2 * 3600 + 60)
    assert stale.status == "warn" and stale.fix and "more than twice exchange_fetch_seconds" in stale.message
    write_credentials(world.keys_dir, "nc", Credentials({"user": world.standin.user, "password": "wrong"}))
    await world.fetch()
    [failing] = await exchange_findings(settings, clock=lambda: time.time() + 2 * 3600 + 60)
    assert failing.status == "warn" and "refused the credentials (HTTP 401)" in failing.message
    on_demand = make_settings(extra={"pipeline": {"exchange_fetch_seconds": 0}})
    [manual] = await exchange_findings(on_demand, clock=lambda: time.time() + 10 * 3600)
    assert manual.status == "ok" and "on demand only" in manual.message


async def test_labeler_doctor_names_a_stale_exchange_and_the_fix(
    world: World, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`labeler doctor` as an operator runs it, on the database a fetch wrote, whose last complete fetch is then
    set three days back (the default exchange_fetch_seconds allows two hours). The identity checks fail (no PLC
    directory answers on the dead loopback port); the exchange line is what is looked at."""
    await world.fetch()
    stale = syntax.format_datetime(datetime.now(UTC) - timedelta(days=3))
    async with world.stores.engine.begin() as conn:
        await conn.execute(sa.update(exchanges).where(exchanges.c.name == "nc").values(last_success_at=stale))
    invoke = cli_invoker(make_settings(), monkeypatch)
    monkeypatch.setenv("LABELER_DID", "did:plc:labelertestlabelertest1")
    monkeypatch.setenv("LABELER_PLC_URL", "http://127.0.0.1:9")
    lines = (await asyncio.to_thread(invoke, "doctor", "--wait", "0")).output.splitlines()
    [at] = [i for i, line in enumerate(lines) if line.startswith("[WARN] exchanges")]
    assert f"nc (ncmec → NCMEC): last complete fetch {stale}, more than twice exchange_fetch_seconds" in lines[at]
    assert lines[at + 1].strip().startswith("fix: check that worker processes run")
    assert "`labeler exchange fetch nc` fetches it now" in lines[at + 1]
