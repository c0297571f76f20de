"""Tech Against Terrorism's hash list filling a bank, against a stand-in speaking TAT's wire format over real HTTP
on loopback: first and incremental fetches, deleted and updated records, malformed records and pages, refused
credentials, a token expiring mid-fetch, an outage mid-fetch, the CLI, and a fetched hash matched through the
upload API. python-threatexchange's own client reads the stand-in too, so the stand-in speaks what pytx speaks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pipeline.corpus import random_hashes
from support.server import serve_in_thread
from threatexchange.exchanges.clients.techagainstterrorism.api import TATHashListAPI
from threatexchange.exchanges.impl.techagainstterrorism_api import TATCheckpoint

from labeler.config import Settings
from labeler.exchanges.doctor import exchange_findings
from labeler.exchanges.store import entry_note
from labeler.exchanges.tat import TYPE as TAT
from labeler.pipeline.bank_sync import SyncedBanks
from labeler.pipeline.banks import EntryInput
from labeler.store.exchange_schema import exchange_entries

from .harness import World, check_cli_lifecycle, cli_invoker, served
from .harness import world as exchange_world
from .tat_standin import Record, TatStandin

H = random_hashes(8, seed=31)
T0 = 1_704_901_040.222779  # records were updated around then (epoch seconds, as TAT sends them)
MD5 = "c3" * 16
SHA256 = "d4" * 32


def _records() -> list[Record]:
    return [
        Record(101, H[0], T0 + 1),
        Record(102, H[1].upper(), T0 + 2),  # TAT's case is not ours: stored lowercase
        Record(103, MD5, T0 + 3, algorithm="MD5", file_type="mp4"),
        Record(104, H[2], T0 + 4),
        Record(105, "e5" * 64, T0 + 5, algorithm="SHA512", file_type="png"),  # nothing a bank here holds
        Record(106, H[3], T0 + 6),
    ]


@pytest.fixture
def standin() -> Iterator[tuple[TatStandin, str]]:
    yield from served(TatStandin(records=_records()))


@pytest.fixture
async def world(standin: tuple[TatStandin, str], database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    server, url = standin
    async with exchange_world(
        database_url, tmp_path / "keys", standin=server, url=url, type_="tat", carries=TAT.signal_types, name="tat",
        bank="TAT", now=T0 + 100,
    ) as made:  # fmt: skip
        yield made


def _checkpoint(record_id: int) -> str:
    record = next(r for r in _records() if r.id == record_id)
    return f"{record.updated_on},{record.id}"


async def _entries(world: World) -> list[tuple[str, str]]:
    async with world.stores.engine.connect() as conn:
        query = sa.select(exchange_entries.c.remote_id, exchange_entries.c.value).order_by(exchange_entries.c.remote_id)
        return [(str(rid), str(value)) for rid, value in await conn.execute(query)]


async def test_first_fetch_pages_by_checkpoint_and_records_each_entry(world: World) -> None:
    report = await world.fetch()
    assert (report.error, report.complete, report.pages, report.added, report.skipped) == (None, True, 3, 4, [])
    banked = await world.banked()
    assert {value: rid for value, (rid, _note) in banked.items()} == {
        H[0]: "101",
        H[1]: "102",
        H[2]: "104",
        H[3]: "106",
    }
    assert {note for _rid, note in banked.values()} == {entry_note("tat")}  # 103 (MD5) and 105 (SHA512) are not PDQ
    asked = world.standin.requests
    assert [q["after"] for q in asked] == ["", _checkpoint(102), _checkpoint(104)]
    assert all(q["order"] == "asc" and "offset" not in q for q in asked)
    assert world.standin.logins == [world.standin.user]  # one login, its token used for every page
    assert len({q["token"] for q in asked}) == 1
    assert await _entries(world) == [("101", H[0]), ("102", H[1]), ("104", H[2]), ("106", H[3])]
    [exchange] = await world.stores.all()
    assert exchange.last_success_at and exchange.fetch_errors == 0 and exchange.entries == 4
    assert exchange.checkpoint == {"after": _checkpoint(106)}


async def test_incremental_fetch_reads_only_what_changed_after_the_checkpoint(world: World) -> None:
    await world.fetch()
    world.standin.records.append(Record(107, H[4], T0 + 50))
    world.standin.requests.clear()
    report = await world.fetch()
    assert (report.error, report.pages, report.added) == (None, 1, 1)
    [query] = world.standin.requests
    assert query["after"] == _checkpoint(106)
    assert (await world.banked())[H[4]][0] == "107" and len(await world.banked()) == 5
    [exchange] = await world.stores.all()
    assert exchange.checkpoint == {"after": f"{T0 + 50},107"}
    world.standin.requests.clear()
    nothing = await world.fetch()  # nothing new: one empty page, which carries no checkpoint
    assert (nothing.error, nothing.pages, nothing.added, nothing.complete) == (None, 1, 0, True)
    assert (await world.stores.get("tat")).checkpoint == {"after": f"{T0 + 50},107"}


async def test_deleted_and_updated_records_change_the_bank(world: World) -> None:
    await world.fetch()
    records = {r.id: r for r in world.standin.records}
    records[102].deleted, records[102].updated_on = True, T0 + 60
    records[104].hash_digest, records[104].updated_on = H[5], T0 + 61
    report = await world.fetch()
    assert (report.error, report.added, report.removed) == (None, 1, 2)
    banked = await world.banked()
    assert set(banked) == {H[0], H[3], H[5]} and banked[H[5]][0] == "104"
    assert await _entries(world) == [("101", H[0]), ("104", H[5]), ("106", H[3])]
    again = await world.fetch()  # the same changes, already applied: nothing moves
    assert (again.added, again.removed) == (0, 0)


async def test_a_hash_also_imported_by_hand_stays_when_tat_deletes_it(world: World) -> None:
    await world.stores.banks.add_entries("TAT", [EntryInput(H[1], external_id="ours")])
    await world.fetch()
    records = {r.id: r for r in world.standin.records}
    records[102].deleted, records[102].updated_on = True, T0 + 60
    assert (await world.fetch()).removed == 0
    assert (await world.banked())[H[1]] == ("ours", None)


async def test_a_hash_two_exchanges_carry_leaves_the_bank_when_the_last_of_them_deletes_it(world: World) -> None:
    """Withdrawn by the exchange that banked it, a hash another exchange carries stays, and from then on names
    that exchange and its id there, in the bank and in a running process's matcher (through the change log)."""
    other = TatStandin(records=[Record(900, H[1], T0 + 1)])
    matcher = SyncedBanks(world.stores.banks, poll_interval=3600)
    with serve_in_thread(other.app()) as server:
        await world.stores.add("tat2", "tat", "TAT", {"url": server.url}, carries=TAT.signal_types)
        world.credentials({"user": other.user, "password": other.password}, name="tat2")
        await world.fetch()
        assert (await world.fetch("tat2")).added == 0  # banked already, by the first exchange
        [before] = await matcher.lookup(H[1], max_distance=0)
        assert (before.external_id, before.note) == ("102", entry_note("tat"))
        records = {r.id: r for r in world.standin.records}
        records[102].deleted, records[102].updated_on = True, T0 + 60
        assert (await world.fetch()).removed == 0  # the other exchange still carries it
        assert (await world.banked())[H[1]] == ("900", entry_note("tat2"))
        await matcher.refresh()
        [after] = await matcher.lookup(H[1], max_distance=0)
        assert (after.entry_id, after.external_id, after.note) == (before.entry_id, "900", entry_note("tat2"))
        other.records[0].deleted, other.records[0].updated_on = True, T0 + 60
        assert (await world.fetch("tat2")).removed == 1  # no exchange carries it any more
    await matcher.refresh()
    assert H[1] not in await world.banked() and await matcher.lookup(H[1], max_distance=0) == []
    await matcher.aclose()


async def test_malformed_records_are_skipped_and_logged_and_the_fetch_moves_past_them(
    world: World, caplog: Any
) -> None:
    records = {r.id: r for r in world.standin.records}
    records[101].broken = True  # no hash_digest
    records[104].hash_digest = "not-a-pdq-hash"
    report = await world.fetch()
    assert report.error is None and report.complete
    assert set(await world.banked()) == {H[1], H[3]}
    assert len(report.skipped) == 2
    assert "records pytx cannot read: #0 (id 101)" in report.skipped[0]
    assert "malformed pdq hash: 104" in report.skipped[1]
    assert "skipped a Tech Against Terrorism record" in caplog.text and "no hash_digest" in caplog.text
    [exchange] = await world.stores.all()
    assert exchange.fetch_errors == 1 and exchange.checkpoint == {"after": _checkpoint(106)}


async def test_a_malformed_page_is_read_again_by_the_next_fetch_and_nothing_is_lost(world: World) -> None:
    world.standin.malformed = {_checkpoint(102)}  # the second page, once
    report = await world.fetch()
    assert report.error is not None and not report.complete and report.pages == 1
    assert f"page after {_checkpoint(102)} is malformed (not JSON" in report.error and "will retry" in report.error
    assert set(await world.banked()) == {H[0], H[1]}
    stopped = await world.stores.get("tat")
    assert (stopped.resume_at, stopped.unreadable) == ({"after": _checkpoint(102)}, 1)
    world.standin.malformed = set()
    world.standin.requests.clear()
    resumed = await world.fetch()
    assert (resumed.error, resumed.pages, resumed.added) == (None, 2, 2)
    assert world.standin.requests[0]["after"] == _checkpoint(102)
    assert (await world.stores.get("tat")).checkpoint == {"after": _checkpoint(106)}  # the count gone with it


async def test_a_record_that_keeps_its_page_unreadable_is_skipped_after_retries_losing_only_itself(
    world: World,
) -> None:
    world.standin.records[3].poisoned = True  # 104: every page holding it is cut short (HMA issue #2004)
    world.standin.requests.clear()
    report = await world.retried_then_skipped()
    assert (report.error, report.complete) == (None, True)
    assert report.skipped == [f"skipped 1 unreadable Tech Against Terrorism record(s) after {_checkpoint(103)}"]
    assert set(await world.banked()) == {H[0], H[1], H[3]}
    assert [rid for rid, _ in await _entries(world)] == ["101", "102", "106"]  # 103 is an MD5; 104 alone is lost
    skipping = [q for q in world.standin.requests if q.get("limit") == "1"]  # one record a page, then by offset
    assert [(q["after"], q["offset"]) for q in skipping] == [(_checkpoint(102), "0"), (_checkpoint(103), "0"),
                                                             (_checkpoint(103), "1")]  # fmt: skip
    [exchange] = await world.stores.all()
    assert (exchange.checkpoint, exchange.last_error, exchange.fetch_errors) == ({"after": _checkpoint(106)}, None, 4)


async def test_an_unreadable_last_record_stops_fetches_saying_so_until_another_follows_it(
    world: World, make_settings: Any
) -> None:
    world.standin.records[5].poisoned = True  # 106, the last record
    report = await world.retried_then_skipped()
    assert report.error is not None and not report.complete
    assert f"record after {_checkpoint(105)} is unreadable, and the list has none after it yet" in report.error
    assert "unreadable 4 fetch(es) in a row, could not be skipped yet" in report.error
    [finding] = await exchange_findings(make_settings())
    assert finding.status == "warn" and "4 fetch(es) in a row stopped at an unreadable page" in finding.message
    assert "has none after it yet" in finding.message
    world.standin.records.append(Record(107, H[4], T0 + 7))
    report = await world.fetch()
    assert (report.error, report.complete, report.added) == (None, True, 1)
    assert set(await world.banked()) == {H[0], H[1], H[2], H[4]}
    [finding] = await exchange_findings(make_settings())
    assert finding.status == "ok"


async def test_refused_credentials_are_a_clear_error_without_the_password(world: World) -> None:
    world.credentials({"user": world.standin.user, "password": "not-the-password"})
    report = await world.fetch()
    assert report.error is not None and "refused the credentials (HTTP 400)" in report.error
    assert "not-the-password" not in report.error
    [exchange] = await world.stores.all()
    assert exchange.fetch_errors == 1 and exchange.last_error == report.error and exchange.checkpoint is None
    assert world.standin.requests == [] and await world.banked() == {}


async def test_an_account_without_the_hash_list_is_told_so(world: World) -> None:
    world.standin.list_access = False
    report = await world.fetch()
    assert report.error is not None and "refused the hash list to a fresh token (HTTP 403)" in report.error
    assert len(world.standin.logins) == 1  # a fresh token refused: no second login


async def test_a_token_expiring_mid_fetch_is_renewed_and_the_fetch_goes_on(world: World) -> None:
    world.standin.token_uses = 1  # each token reads one page, then TAT answers 403 "Token has expired"
    report = await world.fetch()
    assert (report.error, report.complete, report.pages, report.added) == (None, True, 3, 4)
    assert len(world.standin.logins) == 3
    tokens = [q["token"] for q in world.standin.requests]
    assert len(tokens) == 5 and len(set(tokens)) == 3  # pages 2 and 3 each asked twice: expired, then renewed
    assert [q["after"] for q in world.standin.requests] == [
        "", _checkpoint(102), _checkpoint(102), _checkpoint(104), _checkpoint(104)
    ]  # fmt: skip


async def test_an_outage_mid_fetch_resumes_at_the_next_page_without_duplicates(world: World) -> None:
    world.standin.fail_after = 1  # the first page, then 503s
    report = await world.fetch()
    assert report.error is not None and "HTTP 503" in report.error and report.pages == 1
    assert (await world.stores.get("tat")).checkpoint == {"after": _checkpoint(102)}
    assert set(await world.banked()) == {H[0], H[1]}
    world.standin.fail_after = None
    world.standin.requests.clear()
    report = await world.fetch()
    assert (report.error, report.pages, report.added) == (None, 2, 2)
    assert [q["after"] for q in world.standin.requests] == [_checkpoint(102), _checkpoint(104)]
    assert len(await world.banked()) == 4 and len(await _entries(world)) == 4


async def test_md5_and_sha256_banks_take_tats_md5_and_sha256_records(world: World) -> None:
    world.standin.records.append(Record(108, SHA256.upper(), T0 + 7, algorithm="SHA256", file_type="jpg"))
    world.standin.records.append(Record(109, "f6" * 16, T0 + 8, algorithm="MD5", file_type="jpg"))
    for bank, signal in (("TAT_MD5", "md5"), ("TAT_SHA256", "sha256")):
        await world.stores.banks.create(bank, signal_type=signal)
        await world.stores.add(bank.lower(), "tat", bank, {"url": world.url}, carries=TAT.signal_types)
        world.credentials({"user": world.standin.user, "password": world.standin.password}, bank.lower())
        assert (await world.fetch(bank.lower())).error is None
    md5s = await world.stores.banks.signal_rows("TAT_MD5")
    assert sorted((row[0], row[3]) for _signal, row in md5s) == [(MD5, "103"), ("f6" * 16, "109")]
    [(_signal, sha)] = await world.stores.banks.signal_rows("TAT_SHA256")
    assert (sha[0], sha[3]) == (SHA256, "108")


async def test_the_password_and_tokens_are_kept_out_of_logs_and_the_database(world: World) -> None:
    await world.fetch_keeping_secrets(lambda: [world.standin.password, *world.standin.tokens])


def test_pytx_client_reads_the_standin(standin: tuple[TatStandin, str]) -> None:
    """python-threatexchange's client (logging in before each page, following `next` by offset) reads the same
    records from the stand-in as ours, so the stand-in speaks the format pytx expects."""
    server, url = standin

    class Client(TATHashListAPI):
        BASE_URL = url + "/"

    read = list(Client(server.user, server.password).fetch_hashes_iter(""))
    assert [r.id for page in read for r in page.results] == [101, 102, 103, 104, 105, 106]
    assert TATCheckpoint.from_tat_fetch(read[-1]).checkpoint == _checkpoint(106)
    assert len(server.logins) == 3 and [q.get("offset") for q in server.requests] == [None, "2", "4"]


@pytest.fixture
def upload_settings(make_settings: Any) -> Settings:
    settings: Settings = make_settings(
        upload_tokens="tok", allow_private_fetch=True, extra={"pipeline": {"bank_poll_seconds": 0.1}}
    )
    return settings


def test_cli_add_fetch_list_remove_and_a_fetched_hash_matches_over_the_upload_api(
    upload_settings: Settings, standin: tuple[TatStandin, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    invoke = cli_invoker(upload_settings, monkeypatch)
    server, url = standin
    assert invoke("bank", "create", "TAT").exit_code == 0
    refused = invoke("exchange", "add", "x", "--type", "tat", "--bank", "TAT", "--environment", "NGO",
                     "--user", "u", "--password", "p")  # fmt: skip
    assert refused.exit_code != 0 and "tat takes no --environment" in refused.output
    check_cli_lifecycle(
        invoke, upload_settings, add=["tat", "--type", "tat", "--bank", "TAT", "--url", url, "--user", server.user],
        typed=server.password, fetched="tat: 3 pages, 4 added, 0 removed, 0 skipped",
        listed=f"tat\ttat\tTAT\t{url}\t4 entries", match=(H[2], [("TAT", "104")]),
        wrong=["--type", "tat", "--bank", "TAT", "--url", url, "--user", "u", "--password", "not-the-password"],
        refused="refused the credentials (HTTP 400)",
        secrets=[server.password, "not-the-password"],
    )  # fmt: skip
    default = invoke("exchange", "add", "tat2", "--type", "tat", "--bank", "TAT", "--user", "u", "--password", "p")
    assert default.exit_code == 0 and "https://app.terrorismanalytics.org/" in default.output
