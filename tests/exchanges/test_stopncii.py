"""StopNCII.org filling a bank and taking moderators' verdicts back, against a stand-in speaking StopNCII's wire format
over real HTTP on loopback: first and incremental fetches, withdrawn, deleted and updated hashes, malformed records
and corrupt pages (HMA issue #2004), refused keys, an outage mid-paging, expired page tokens, feedback, the CLI, and a
fetched hash matched through the upload API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result
from pipeline.corpus import random_hashes
from support.server import serve_in_thread
from threatexchange.exchanges.clients.stopncii import api

from labeler.config import Settings
from labeler.exchanges.credentials import Credentials, credentials_path
from labeler.exchanges.errors import ExchangeAuthError, ExchangeError, ExchangeUnavailable, MalformedPage
from labeler.exchanges.fetch import http_client
from labeler.exchanges.stopncii import TYPE as STOPNCII
from labeler.exchanges.stopncii import parse_page
from labeler.exchanges.store import entry_note
from labeler.exchanges.types import FeedbackCall
from labeler.store.exchange_schema import exchange_entries

from .harness import World, check_cli_lifecycle, cli_invoker
from .harness import world as exchange_world
from .stopncii_standin import Record, StopNciiStandin

H = random_hashes(8, seed=22)
T0 = 1_700_000_000  # the stand-in's records were changed around then
MD5 = "c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2"
FIRST = H[0].upper()  # StopNCII's form of the first hash: the bank holds it lowercased, feedback sends it as given


def rid(value: str, signal_type: str = "ImagePDQ") -> str:
    return f"{signal_type}:{value}"


@pytest.fixture
def standin() -> Iterator[tuple[StopNciiStandin, str]]:
    standin = StopNciiStandin(
        records=[
            Record(FIRST, T0 + 10),
            Record(H[1], T0 + 20, status="Received"),
            Record(H[2], T0 + 30),
            Record(MD5, T0 + 40, signal_type="VideoMD5"),
            Record("some text", T0 + 45, signal_type="Text"),
            Record(H[3], T0 + 50),
        ]
    )
    with serve_in_thread(standin.app()) as server:
        yield standin, server.url + "/v1"


@pytest.fixture
async def world(standin: tuple[StopNciiStandin, str], database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    server, url = standin
    async with exchange_world(
        database_url, tmp_path / "keys", standin=server, url=url, type_="stopncii", carries=STOPNCII.signal_types,
        credentials=_keys(server), name="st", bank="NCII", now=T0 + 1000,
    ) as made:  # fmt: skip
        yield made


def _keys(server: StopNciiStandin, **changed: str) -> dict[str, str]:
    keys = {
        "subscription_key": server.subscription_key, "fetch_key": server.fetch_key,
        "feedback_key": server.feedback_key,
    }  # fmt: skip
    return keys | changed


async def _recorded(world: World) -> list[tuple[str, str]]:
    async with world.stores.engine.connect() as conn:
        query = sa.select(exchange_entries.c.remote_id, exchange_entries.c.value).order_by(exchange_entries.c.remote_id)
        return [(r.remote_id, r.value) for r in await conn.execute(query)]


async def test_first_fetch_pages_through_with_both_keys_and_records_each_hash(world: World) -> None:
    report = await world.fetch()
    assert (report.error, report.complete, report.pages, report.added, report.skipped) == (None, True, 3, 4, [])
    note = entry_note("st")
    assert await world.banked() == {
        H[0]: (rid(FIRST), note),
        H[1]: (rid(H[1]), note),
        H[2]: (rid(H[2]), note),
        H[3]: (rid(H[3]), note),
    }  # fmt: skip  (the VideoMD5 is not for a PDQ bank, the Text record for no bank)
    queries = world.standin.requests
    assert [q["startTimestamp"] for q in queries] == ["10", "10", "10"]  # pytx's start, and the set's own after
    assert [q["pageSize"] for q in queries] == ["800"] * 3
    assert "nextPageToken" not in queries[0] and queries[1]["nextPageToken"] != queries[2]["nextPageToken"]
    assert sorted(await _recorded(world)) == sorted((rid(v), v.lower()) for v in (FIRST, H[1], H[2], H[3]))
    [exchange] = await world.stores.all()
    assert exchange.last_success_at and exchange.fetch_errors == 0 and exchange.entries == 4
    assert exchange.checkpoint == {"update_time": T0 + 50}  # the set's nextSetTimestamp, once it is read through


async def test_incremental_fetch_starts_where_the_last_set_ended(world: World) -> None:
    await world.fetch()
    world.standin.records.append(Record(H[4], T0 + 200))
    world.standin.requests.clear()
    report = await world.fetch()
    assert (report.error, report.pages, report.added) == (None, 1, 1)
    [query] = world.standin.requests
    assert query["startTimestamp"] == str(T0 + 50) and "nextPageToken" not in query
    assert len(await world.banked()) == 5


async def test_withdrawn_deleted_updated_and_restored_hashes_change_the_bank(world: World) -> None:
    await world.fetch()
    records = {r.hash_value: r for r in world.standin.records}
    records[H[1]].status, records[H[1]].changed = "Withdrawn", T0 + 200
    records[H[2]].status, records[H[2]].changed = "Deleted", T0 + 210
    records[FIRST].changed = T0 + 220  # another case, another partner's feedback: still the same hash
    records[FIRST].feedbacks.append({"source": "Other", "feedbackValue": "Blocked", "tags": ["Nude"]})
    report = await world.fetch()
    assert (report.error, report.added, report.removed) == (None, 0, 2)
    assert set(await world.banked()) == {H[0], H[3]}
    records[H[1]].status, records[H[1]].changed = "Active", T0 + 300  # a new case for a withdrawn hash
    report = await world.fetch()
    assert (report.error, report.added, report.removed) == (None, 1, 0)
    assert set(await world.banked()) == {H[0], H[1], H[3]}
    assert [v for _, v in await _recorded(world)].count(H[0]) == 1  # updated, not duplicated
    [exchange] = await world.stores.all()
    assert exchange.entries == 3


async def test_unreadable_records_are_skipped_and_a_corrupt_page_costs_only_its_bad_record(
    world: World, caplog: Any
) -> None:
    records = {r.hash_value: r for r in world.standin.records}
    records[FIRST].broken = True  # a lastModtimestamp pytx cannot read
    records[H[2]].poisoned = True  # every page holding it is a truncated body
    report = await world.fetch()
    assert report.error is None and report.complete
    assert set(await world.banked()) == {H[1], H[3]}
    assert "skipped a StopNCII record pytx cannot read" in caplog.text
    assert "malformed StopNCII page" in caplog.text
    skipped = [_span(problem) for problem in report.skipped]
    assert skipped and skipped[0][0] == T0 + 19 and all(a[1] == b[0] for a, b in pairwise(skipped))
    assert skipped[0][0] < T0 + 30 < skipped[-1][1] <= T0 + 40  # only the poisoned record's time was given up
    [exchange] = await world.stores.all()
    assert exchange.fetch_errors == len(report.skipped) and exchange.last_success_at is not None
    pages_asked = {q.get("pageSize") for q in world.standin.requests}
    assert pages_asked == {"800", "1"}  # read again one record a page after the corrupt one


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (b'{"count": 1, "hashRecords": [{"lastMod', "not JSON"),
        (b"[]", "not a FetchHashes answer"),
        (b'{"count": 0, "nextSetTimestamp": "soon", "hasMoreRecords": false}', "unreadable paging fields"),
        (b'{"count": 0, "nextSetTimestamp": 5, "hasMoreRecords": true, "nextPageToken": null}', "no nextPageToken"),
        (json.dumps({"count": 0, "nextSetTimestamp": 5, "hasMoreRecords": True, "nextPageToken": "t" * 9000}).encode(),
         "longer than 8192"),
    ],
)  # fmt: skip
def test_what_makes_a_page_malformed(answer: bytes, why: str) -> None:
    with pytest.raises(MalformedPage, match=why):
        parse_page(answer)


def _span(problem: str) -> tuple[int, int]:
    """The interval a skip gave up, from its problem text."""
    assert problem.startswith("skipped StopNCII's changes from "), problem
    words = problem.split()
    return _epoch(words[4]), _epoch(words[6].rstrip(":"))


def _epoch(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


async def test_an_api_answering_only_corrupt_pages_loses_at_most_a_minute_a_fetch(world: World) -> None:
    for record in world.standin.records:
        record.poisoned = True
    report = await world.fetch()
    assert report.error is not None and "keeps answering malformed pages" in report.error and not report.complete
    assert len(report.skipped) == 6 and await world.banked() == {}
    [exchange] = await world.stores.all()
    assert exchange.checkpoint == {"update_time": 10 + 63} and exchange.fetch_errors == 7
    for record in world.standin.records:
        record.poisoned = False
    report = await world.fetch()
    assert (report.error, report.added) == (None, 4)


async def test_the_keys_are_kept_out_of_logs_and_the_database(world: World) -> None:
    await world.fetch_keeping_secrets(lambda: list(_keys(world.standin).values()))


def test_pytx_client_reads_the_standin(standin: tuple[StopNciiStandin, str]) -> None:
    """python-threatexchange's own client (`fetch_hashes_iter`, following page tokens; feedback) reads from and
    writes to the stand-in what ours does, so the stand-in speaks the format pytx expects."""
    server, url = standin
    keys = {api.StopNCIIEndpoint.SubmitFeedback: server.feedback_key}
    client = api.StopNCIIAPI(server.subscription_key, server.fetch_key, keys, base_url_override=url)
    read = list(client.fetch_hashes_iter(T0))
    assert len(read) == 3 and not read[-1].hasMoreRecords
    records = [(r.signalType.value, r.hashValue, r.hashStatus.value) for page in read for r in page.hashRecords]
    assert records == [(r.signal_type, r.hash_value, r.status) for r in server.records]
    client.submit_feedback(api.StopNCIISignalType.ImagePDQ, FIRST, api.StopNCIICSPFeedbackValue.Blocked)
    assert server.feedback == [{"hashValue": FIRST, "feedbackValue": "Blocked", "tags": []}]


async def test_refused_keys_are_a_clear_error_without_any_key(world: World) -> None:
    server = world.standin
    for wrong, status in (
        ({"subscription_key": "not-the-subscription-key"}, 401),
        ({"fetch_key": "not-the-fetch-key"}, 401),
        ({"fetch_key": server.feedback_key}, 403),  # the SubmitFeedback key on FetchHashes
    ):
        world.credentials(_keys(server, **wrong))
        report = await world.fetch()
        assert report.error is not None and f"StopNCII refused the keys (HTTP {status})" in report.error
        assert not any(key in report.error for key in (*wrong.values(), *_keys(server).values()))
    [exchange] = await world.stores.all()
    assert exchange.fetch_errors == 3 and exchange.checkpoint is None
    assert await world.banked() == {}


async def test_an_outage_mid_paging_resumes_with_the_page_token_without_duplicates(world: World) -> None:
    world.standin.fail_after = 1  # the first page, then 503s
    report = await world.fetch()
    assert report.error is not None and "HTTP 503" in report.error and report.pages == 1
    [exchange] = await world.stores.all()
    checkpoint = exchange.checkpoint
    assert checkpoint is not None and checkpoint["next"] and checkpoint["set_start"] == 10
    assert checkpoint["update_time"] == T0 + 19  # the last record read less a second, not nextSetTimestamp (T0+50)
    assert set(await world.banked()) == {H[0], H[1]}
    world.standin.fail_after = None
    world.standin.requests.clear()
    world.clock.now += 60
    report = await world.fetch()
    assert (report.error, report.pages, report.added) == (None, 2, 2)
    resumed = world.standin.requests[0]
    assert (resumed["startTimestamp"], resumed["nextPageToken"]) == ("10", checkpoint["next"])
    assert len(await world.banked()) == 4 and len(await _recorded(world)) == 4


async def test_an_expired_page_token_restarts_from_the_last_record_read(world: World) -> None:
    world.standin.fail_after = 1
    await world.fetch()
    world.standin.fail_after = None
    world.standin.expire_tokens()
    world.standin.requests.clear()
    world.clock.now += 60
    report = await world.fetch()
    assert (report.error, report.added) == (None, 2)
    refused, restarted = world.standin.requests[:2]
    assert "nextPageToken" in refused
    assert restarted["startTimestamp"] == str(T0 + 19) and "nextPageToken" not in restarted
    assert len(await _recorded(world)) == 4


async def test_a_page_token_older_than_a_quarter_hour_is_not_tried(world: World) -> None:
    world.standin.fail_after = 1
    await world.fetch()
    world.standin.fail_after = None
    world.standin.requests.clear()
    world.clock.now += 16 * 60
    report = await world.fetch()
    assert (report.error, report.added) == (None, 2)
    first = world.standin.requests[0]
    assert first["startTimestamp"] == str(T0 + 19) and "nextPageToken" not in first


async def test_records_dated_in_the_future_never_move_the_restart_time_past_now(world: World) -> None:
    """A set resumed without its token after records stamped far ahead restarts no later than now, so what StopNCII
    changes meanwhile is still fetched."""
    world.standin.records += [Record(H[4 + i], T0 + 10**6 + i) for i in range(3)]  # pages 4 and 5
    world.standin.fail_after = 4
    assert (await world.fetch()).pages == 4
    world.standin.fail_after = None
    world.clock.now += 16 * 60  # the token is stale
    assert (await world.fetch()).error is None
    [exchange] = await world.stores.all()
    assert exchange.checkpoint is not None and exchange.checkpoint["update_time"] <= world.clock.now
    world.standin.records.append(Record("ab" * 32, int(world.clock.now)))
    assert (await world.fetch()).added == 1


async def test_an_md5_bank_takes_stopnciis_video_md5s(world: World) -> None:
    await world.stores.banks.create("NCII_MD5", signal_type="md5")
    await world.stores.add("st-md5", "stopncii", "NCII_MD5", {"url": world.url}, carries=STOPNCII.signal_types)
    world.credentials(_keys(world.standin), name="st-md5")
    report = await world.fetch("st-md5")
    assert (report.error, report.added) == (None, 1)
    rows = await world.stores.banks.signal_rows("NCII_MD5")
    assert [(signal, row[0], row[3]) for signal, row in rows] == [("md5", MD5, rid(MD5, "VideoMD5"))]


async def _feedback(world: World, *, confirmed: bool, keys: dict[str, str] | None = None, value: str = H[0]) -> None:
    async with http_client(allow_private=True) as http:
        call = FeedbackCall(
            {"url": world.url}, Credentials(keys or _keys(world.standin)), http, rid(value.upper()), "pdq", value,
            confirmed, note="the moderator's words stay here",
        )  # fmt: skip
        await STOPNCII.send_feedback(call)


async def test_feedback_sends_blocked_or_not_blocked_for_the_hash_as_stopncii_gave_it(world: World) -> None:
    assert STOPNCII.has_feedback
    await _feedback(world, confirmed=True)
    await _feedback(world, confirmed=False)
    assert world.standin.feedback == [
        {"tags": [], "feedbackValue": "Blocked", "hashValue": FIRST},
        {"tags": [], "feedbackValue": "NotBlocked", "hashValue": FIRST},
    ]
    await world.fetch()  # it comes back as our feedback on the record
    assert [f["feedbackValue"] for f in world.standin.records[0].feedbacks] == ["Blocked", "NotBlocked"]


async def test_feedback_failures_say_whether_to_retry(world: World) -> None:
    server = world.standin
    with pytest.raises(ExchangeAuthError, match=r"refused the keys \(HTTP 401\)") as refused:
        await _feedback(world, confirmed=True, keys=_keys(server, feedback_key="not-the-feedback-key"))
    assert "not-the-feedback-key" not in str(refused.value)
    with pytest.raises(ExchangeAuthError, match=r"HTTP 403"):  # the FetchHashes key on SubmitFeedback
        await _feedback(world, confirmed=True, keys=_keys(server, feedback_key=server.fetch_key))
    without = {k: v for k, v in _keys(server).items() if k != "feedback_key"}
    with pytest.raises(ExchangeError, match="--feedback-key"):
        await _feedback(world, confirmed=True, keys=without)
    server.fail_feedback = True
    with pytest.raises(ExchangeUnavailable, match="HTTP 503"):
        await _feedback(world, confirmed=True)
    server.fail_feedback = False
    with pytest.raises(ExchangeError, match="HTTP 400") as permanent:  # a hash StopNCII does not hold
        await _feedback(world, confirmed=True, value="ab" * 32)
    assert not isinstance(permanent.value, ExchangeUnavailable)
    assert server.feedback == []


@pytest.fixture
def invoke(upload_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """`labeler …` against `upload_settings`, with the bank NCII created."""
    invoke = cli_invoker(upload_settings, monkeypatch)
    assert invoke("bank", "create", "NCII").exit_code == 0
    return invoke


def test_cli_add_prompts_for_keys_fetch_list_remove_and_a_fetched_hash_matches_over_the_upload_api(
    invoke: Callable[..., Result], upload_settings: Settings, standin: tuple[StopNciiStandin, str]
) -> None:
    server, url = standin
    refused = invoke("exchange", "add", "x", "--type", "stopncii", "--bank", "NCII", "--user", "u",
                     "--subscription-key", "s", "--fetch-key", "f")  # fmt: skip
    assert refused.exit_code != 0 and "stopncii takes no --user" in refused.output
    grouped = invoke("exchange", "add", "x", "--type", "stopncii", "--bank", "NCII", "--privacy-group", "1",
                     "--subscription-key", "s", "--fetch-key", "f")  # fmt: skip
    assert grouped.exit_code != 0 and "stopncii takes no --privacy-group" in grouped.output
    wrong = ["--type", "stopncii", "--bank", "NCII", "--url", url, "--subscription-key", "wrong-subscription",
             "--fetch-key", server.fetch_key]  # fmt: skip
    check_cli_lifecycle(
        invoke, upload_settings,
        add=["st", "--type", "stopncii", "--bank", "NCII", "--url", url, "--feedback-key", server.feedback_key],
        typed=f"{server.subscription_key}\n{server.fetch_key}",  # both prompted for
        fetched="st: 3 pages, 4 added, 0 removed, 0 skipped", listed=f"st\tstopncii\tNCII\t{url}\t4 entries",
        match=(H[2], [("NCII", rid(H[2]))]), wrong=wrong, refused="StopNCII refused the keys (HTTP 401)",
        secrets=[*_keys(server).values(), "wrong-subscription"],
    )  # fmt: skip
    path = credentials_path(upload_settings.keys_dir, "st")  # as added again with `wrong`: the keys given, no other
    assert json.loads(path.read_text()) == {"subscription_key": "wrong-subscription", "fetch_key": server.fetch_key}
    assert "wrong-subscription" not in invoke("exchange", "list", "--json").output


def test_cli_feedback_needs_the_feedback_key(
    invoke: Callable[..., Result], upload_settings: Settings, standin: tuple[StopNciiStandin, str]
) -> None:
    """Feedback on is refused, or the feedback key prompted for, while the exchange has no key to send it with."""
    server, url = standin
    keys = ["--subscription-key", server.subscription_key, "--fetch-key", server.fetch_key]
    added = invoke("exchange", "add", "st", "--type", "stopncii", "--bank", "NCII", "--url", url, *keys)
    assert added.exit_code == 0 and "sent back" not in added.output, added.output
    switched = invoke("exchange", "feedback", "st", "on")
    assert switched.exit_code != 0 and "exchange st has no --feedback-key" in switched.output
    assert "\tfeedback off\t" in invoke("exchange", "list").output
    prompted = invoke("exchange", "add", "st2", "--type", "stopncii", "--bank", "NCII", "--url", url, *keys,
                      "--feedback", input=f"{server.feedback_key}\n")  # fmt: skip
    assert prompted.exit_code == 0 and "feedback key" in prompted.output, prompted.output
    assert server.feedback_key not in prompted.output and "moderators' verdicts are sent back" in prompted.output
    stored = json.loads(credentials_path(upload_settings.keys_dir, "st2").read_text())
    assert stored["feedback_key"] == server.feedback_key
    switched = invoke("exchange", "feedback", "st2", "on")
    assert switched.exit_code == 0 and "sent back" in switched.output
