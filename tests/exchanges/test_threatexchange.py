"""Meta's ThreatExchange filling a bank, against a stand-in speaking the Graph API's wire format over real HTTP on
loopback: first and incremental fetches, tombstones and changed indicators, malformed pages and records, a bad
token and an unknown privacy group, an outage mid-fetch, paging links to another host, and a fetched hash matched
through the upload API."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pipeline.blob_server import PdsWorld
from pipeline.conftest import pds_world  # noqa: F401 (fixture)
from pipeline.corpus import encode, flip_bits, random_hashes, structured_rgb
from pipeline.harness import Harness, all_done, eventually
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from support.server import serve_in_thread
from threatexchange.exchanges.clients.fb_threatexchange.api import ThreatExchangeAPI
from threatexchange.exchanges.clients.fb_threatexchange.threat_updates import ThreatUpdateJSON
from threatexchange.exchanges.fetch_state import SignalOpinionCategory
from threatexchange.exchanges.impl.fb_threatexchange_api import FBThreatExchangeIndicatorRecord

from labeler.config import Settings
from labeler.exchanges.credentials import Credentials, credentials_path, write_credentials
from labeler.exchanges.errors import ExchangeAuthError, ExchangeError, ExchangeUnavailable
from labeler.exchanges.fetch import fetch_exchange, http_client
from labeler.exchanges.store import entry_note
from labeler.exchanges.threatexchange import TYPE as THREATEXCHANGE
from labeler.exchanges.threatexchange_feedback import MAX_DESCRIPTOR_PAGES
from labeler.exchanges.types import FeedbackCall
from labeler.pipeline.actions.exchange_feedback import NAME as FEEDBACK
from labeler.pipeline.hasher import hash_image
from labeler.store.exchange_schema import exchange_entries

from .harness import World, check_cli_lifecycle, cli_invoker, settled
from .harness import world as exchange_world
from .threatexchange_standin import VERSION, Descriptor, Indicator, ThreatExchangeStandin, record

H = random_hashes(8, seed=22)
T0 = 1_700_000_000  # the stand-in's indicators were last updated around then
VIDEO_MD5 = "b1" * 16
TAGGED_MD5 = "d1" * 16  # HASH_MD5 tagged media_type_video: pytx reads it as a video MD5
UNTAGGED_MD5 = "c1" * 16  # HASH_MD5 without the tag: any file's MD5, which pytx leaves alone
OTHER_APP = "5550001234"
_NOT_JSON = "ThreatExchange answered HTTP 200 with a body that is not JSON"


def _shared(descriptor_id: str, *tags: str) -> list[Descriptor]:
    return [Descriptor(descriptor_id, OTHER_APP, tags=list(tags))]


@pytest.fixture
def standin() -> Iterator[tuple[ThreatExchangeStandin, str]]:
    standin = ThreatExchangeStandin(
        indicators=[
            Indicator("1001", "HASH_PDQ", H[0], T0 + 10, _shared("2001")),
            Indicator("1002", "HASH_PDQ", H[1], T0 + 20, _shared("2002")),
            Indicator("1003", "HASH_VIDEO_MD5", VIDEO_MD5, T0 + 30, _shared("2003")),
            Indicator("1004", "HASH_PDQ", H[2], T0 + 40, _shared("2004")),
            Indicator("1005", "URI", "https://example.com/", T0 + 50, _shared("2005")),
            Indicator("1006", "HASH_MD5", UNTAGGED_MD5, T0 + 60, _shared("2006")),
            Indicator("1007", "HASH_MD5", TAGGED_MD5, T0 + 70, _shared("2007", "media_type_video")),
            Indicator("1008", "HASH_PDQ", H[3], T0 + 80, _shared("2008")),
        ]
    )
    with serve_in_thread(standin.app()) as server:
        yield standin, server.url + VERSION


@pytest.fixture
async def world(standin: tuple[ThreatExchangeStandin, str], database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    server, url = standin
    async with exchange_world(
        database_url, tmp_path / "keys", standin=server, url=url, type_="threatexchange",
        carries=THREATEXCHANGE.signal_types, credentials={"token": server.token}, name="te", bank="TE",
        now=T0 + 100, options={"privacy_group": server.privacy_group},
    ) as made:  # fmt: skip
        yield made


async def entry_count(world: World) -> int:
    async with world.stores.engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(exchange_entries))).scalar_one())


async def md5_banked(world: World) -> dict[str, str | None]:
    """Bank TE_MD5's entries: hash → external id."""
    return {row[0]: row[3] for _signal, row in await world.stores.banks.signal_rows("TE_MD5")}


async def test_first_fetch_pages_through_and_records_each_indicator(world: World) -> None:
    report = await world.fetch()
    assert (report.error, report.complete, report.pages, report.added, report.skipped) == (None, True, 4, 4, [])
    note = entry_note("te")
    assert await world.banked() == {
        H[0]: ("1001", note),
        H[1]: ("1002", note),
        H[2]: ("1004", note),
        H[3]: ("1008", note),
    }  # fmt: skip  (the MD5s are not for a PDQ bank; the URI was not asked for)
    first, *following = world.standin.requests
    assert first["access_token"] == world.standin.token and "start_time" not in first and "after" not in first
    assert first["fields"] == ",".join(ThreatUpdateJSON.te_threat_updates_fields())  # pytx's own selection
    types = "HASH_MD5,HASH_PDQ,HASH_SHA256,HASH_VIDEO_MD5,HASH_VIDEO_SHA256"
    assert (first["limit"], first["types"]) == ("100", types)
    assert len(following) == 3 and all("after" in q and q["access_token"] == world.standin.token for q in following)
    [exchange] = await world.stores.all()
    assert exchange.checkpoint == {"update_time": T0 + 80, "last_fetch_time": T0 + 100}  # pytx's update_time
    assert exchange.last_success_at and exchange.fetch_errors == 0 and exchange.entries == 4


async def test_incremental_fetch_resumes_at_the_last_update_time(world: World) -> None:
    await world.fetch()
    world.standin.indicators.append(Indicator("1009", "HASH_PDQ", H[4], T0 + 200, _shared("2009")))
    world.standin.requests.clear()
    world.clock.now = T0 + 300
    report = await world.fetch()
    assert (report.error, report.pages, report.added) == (None, 2, 1)  # 1008 again (its second), and 1009
    query, empty = world.standin.requests  # a full page links on to an empty one, as Graph's do
    assert query["start_time"] == str(T0 + 80) and "after" in empty
    assert H[4] in await world.banked() and len(await world.banked()) == 5
    [exchange] = await world.stores.all()
    assert exchange.checkpoint == {"update_time": T0 + 200, "last_fetch_time": T0 + 300}


async def test_an_update_time_in_the_future_does_not_move_the_checkpoint_past_now(world: World) -> None:
    world.standin.indicators[-1].last_updated = T0 + 10**9
    await world.fetch()
    [exchange] = await world.stores.all()
    assert exchange.checkpoint == {"update_time": T0 + 100, "last_fetch_time": T0 + 100}
    world.standin.indicators.append(Indicator("1009", "HASH_PDQ", H[4], T0 + 200, _shared("2009")))
    world.clock.now = T0 + 300
    assert (await world.fetch()).added == 1


async def test_tombstones_and_changed_indicators_change_the_bank(world: World) -> None:
    await world.stores.banks.create("TE_MD5", signal_type="md5")
    await world.stores.add(
        "te-md5", "threatexchange", "TE_MD5", {"url": world.url, "privacy_group": world.standin.privacy_group},
        carries=THREATEXCHANGE.signal_types,
    )  # fmt: skip
    world.credentials({"token": world.standin.token}, name="te-md5")
    await world.fetch()
    assert (await world.fetch("te-md5")).added == 2
    assert await md5_banked(world) == {VIDEO_MD5: "1003", TAGGED_MD5: "1007"}  # not the untagged HASH_MD5
    indicators = {i.id: i for i in world.standin.indicators}
    indicators["1002"].deleted, indicators["1002"].last_updated = True, T0 + 200  # withdrawn
    indicators["1003"].descriptors, indicators["1003"].last_updated = [], T0 + 201  # no descriptor left: pytx drops it
    indicators["1007"].descriptors, indicators["1007"].last_updated = _shared("2007"), T0 + 202  # untagged now
    indicators["1006"].descriptors, indicators["1006"].last_updated = _shared("2006", "media_type_video"), T0 + 203
    world.clock.now = T0 + 300
    report = await world.fetch()
    assert (report.error, report.added, report.removed) == (None, 0, 1)
    assert set(await world.banked()) == {H[0], H[2], H[3]}
    report = await world.fetch("te-md5")
    assert (report.error, report.added, report.removed) == (None, 1, 2)
    assert await md5_banked(world) == {UNTAGGED_MD5: "1006"}
    assert [(e.name, e.entries) for e in await world.stores.all()] == [("te", 3), ("te-md5", 1)]


async def test_a_sha256_bank_takes_video_sha256s_as_pytx_maps_them(world: World) -> None:
    world.standin.indicators += [
        Indicator("1011", "HASH_VIDEO_SHA256", "e1" * 32, T0 + 91, _shared("2011")),
        Indicator("1012", "HASH_SHA256", "e2" * 32, T0 + 92, _shared("2012", "media_type_video")),
        Indicator("1013", "HASH_SHA256", "e3" * 32, T0 + 93, _shared("2013")),  # any file's: not taken
    ]
    await world.stores.banks.create("TE_SHA256", signal_type="sha256")
    options = {"url": world.url, "privacy_group": world.standin.privacy_group}
    await world.stores.add("te-sha", "threatexchange", "TE_SHA256", options, carries=THREATEXCHANGE.signal_types)
    world.credentials({"token": world.standin.token}, name="te-sha")
    assert (await world.fetch("te-sha")).added == 2
    rows = await world.stores.banks.signal_rows("TE_SHA256")
    assert {row[0]: row[3] for _signal, row in rows} == {"e1" * 32: "1011", "e2" * 32: "1012"}


async def test_unreadable_records_are_skipped_and_logged(world: World, caplog: Any) -> None:
    world.standin.indicators[0].broken = True  # 1001 without its indicator
    report = await world.fetch()
    assert report.error is None and report.complete
    assert set(await world.banked()) == {H[1], H[2], H[3]}
    assert report.skipped == ["skipped 1 ThreatExchange record(s) pytx cannot read"]
    assert "skipped a ThreatExchange record pytx cannot read: KeyError" in caplog.text
    [exchange] = await world.stores.all()
    assert exchange.fetch_errors == 1 and exchange.last_success_at is not None


@pytest.mark.parametrize("broken", ["truncated", "data"])
async def test_an_unreadable_page_stops_the_fetch_and_the_next_resumes_before_it(world: World, broken: str) -> None:
    world.standin.malformed = {2: broken}  # the second page: cut short, or its data garbled (its paging intact)
    report = await world.fetch()
    assert report.error is not None and "page of updates since" in report.error and "will retry" in report.error
    assert report.pages == 1 and set(await world.banked()) == {H[0], H[1]}
    world.standin.malformed = {}
    world.standin.requests.clear()
    report = await world.fetch()
    assert (report.error, report.added) == (None, 2)
    assert world.standin.requests[0]["start_time"] == str(T0 + 20)


async def test_an_indicator_that_keeps_its_page_unreadable_is_skipped_after_retries(world: World) -> None:
    world.standin.indicators[3].poisoned = True  # 1004 (T0 + 40): every page holding it is cut short
    report = await world.retried_then_skipped()
    assert (report.error, report.complete) == (None, True)
    gave_up = [(T0 + 30, T0 + 31), (T0 + 31, T0 + 33), (T0 + 33, T0 + 37), (T0 + 37, T0 + 45)]  # 1, 2, 4, 8 s
    assert report.skipped == [f"skipped ThreatExchange's updates from {a} to {b}: " + _NOT_JSON for a, b in gave_up]
    assert set(await world.banked()) == {H[0], H[1], H[3]}  # 1004's H[2] alone is lost
    [exchange] = await world.stores.all()
    assert (exchange.checkpoint, exchange.last_error) == ({"update_time": T0 + 80, "last_fetch_time": T0 + 100}, None)
    narrowed = [q["start_time"] for q in world.standin.requests if q.get("limit") == "1" and "after" not in q]
    assert narrowed == [str(T0 + 30), str(T0 + 31), str(T0 + 33), str(T0 + 37), str(T0 + 45)]


async def test_a_bad_token_is_a_clear_error_without_the_token(world: World) -> None:
    wrong = f"{world.standin.app_id}|not-the-secret-but-long-enough"
    world.credentials({"token": wrong})
    report = await world.fetch()
    assert report.error is not None
    assert "HTTP 400 (OAuthException code 190: Invalid OAuth access token signature.)" in report.error
    assert "check the app token" in report.error and "not-the-secret" not in report.error
    [exchange] = await world.stores.all()
    assert exchange.fetch_errors == 1 and exchange.last_error == report.error and exchange.checkpoint is None
    assert await world.banked() == {}
    world.credentials({"token": "a-user-token-not-an-app-token"})
    report = await world.fetch()
    assert report.error is not None and "not an app token" in report.error and "a-user-token" not in report.error
    assert len(world.standin.requests) == 1  # refused before sending it anywhere


async def test_an_unknown_privacy_group_is_a_clear_error(world: World) -> None:
    world.standin.privacy_group = "999"
    report = await world.fetch()
    assert report.error is not None and "GraphMethodException code 100" in report.error
    assert "does not exist, cannot be loaded due to missing permissions" in report.error
    assert world.standin.token not in report.error


@pytest.mark.parametrize(
    ("failure", "said"),
    [
        ("outage", "ThreatExchange answered HTTP 500; will resume"),
        ("throttled", "HTTP 400 (OAuthException code 4: (#4) Application request limit reached); will resume"),
    ],
)
async def test_an_outage_mid_fetch_resumes_at_the_update_time_without_duplicates(
    world: World, failure: str, said: str
) -> None:
    world.standin.fail_after, world.standin.failure = 2, failure  # two pages, then failures
    report = await world.fetch()
    assert report.error is not None and said in report.error
    assert report.pages == 2
    [exchange] = await world.stores.all()
    assert exchange.checkpoint == {"update_time": T0 + 40, "last_fetch_time": T0 + 100}
    assert set(await world.banked()) == {H[0], H[1], H[2]}
    world.standin.fail_after = None
    world.standin.requests.clear()
    world.clock.now += 60
    report = await world.fetch()
    assert (report.error, report.added) == (None, 1)
    assert world.standin.requests[0]["start_time"] == str(T0 + 40) and "after" not in world.standin.requests[0]
    assert len(await world.banked()) == 4 and await entry_count(world) == 4


async def test_a_paging_link_to_another_host_is_not_followed(world: World) -> None:
    """Graph's `next` links are absolute URLs carrying the token; one naming another host (or path) is refused
    before anything is sent there."""
    elsewhere: list[str] = []

    async def collect(request: Request) -> Response:
        elsewhere.append(str(request.url))
        return Response("{}", media_type="application/json")

    with serve_in_thread(Starlette(routes=[Route("/{path:path}", collect)])) as other:
        world.standin.next_base = other.url
        report = await world.fetch()
    assert report.error is not None and f"refused ThreatExchange's paging link to {other.url}{VERSION}" in report.error
    assert world.standin.token not in report.error
    assert elsewhere == [] and len(world.standin.requests) == 1
    assert report.pages == 0 and await world.banked() == {}  # the page that named it is not applied either


async def test_a_checkpoint_older_than_85_days_reads_the_group_again(world: World) -> None:
    await world.fetch()
    world.clock.now += 86 * 24 * 3600
    world.standin.requests.clear()
    report = await world.fetch()
    assert report.error is None and "start_time" not in world.standin.requests[0]
    assert len(report.skipped) == 1 and "more than 85 days ago" in report.skipped[0]
    assert report.added == 0 and len(await world.banked()) == 4


async def test_the_token_is_kept_out_of_logs_and_the_database(world: World) -> None:
    logged = await world.fetch_keeping_secrets(lambda: [world.standin.secret])
    assert "access_token=[redacted]" in logged  # httpx's request lines


def test_pytx_client_reads_the_standin(standin: tuple[ThreatExchangeStandin, str]) -> None:
    """python-threatexchange's own client (`get_threat_updates`, following Graph's cursors; a reaction) reads
    from and writes to the stand-in what ours does, so the stand-in speaks the format pytx expects."""
    server, url = standin
    client = ThreatExchangeAPI(server.token, endpoint_override=url)
    cursor = client.get_threat_updates(  # as pytx's FBThreatExchangeSignalExchangeAPI.fetch_iter asks
        int(server.privacy_group), start_time=T0, page_size=100, fields=ThreatUpdateJSON.te_threat_updates_fields(),
        decode_fn=ThreatUpdateJSON,
    )  # fmt: skip
    read = [(u.id, u.indicator, u.threat_type, u.time, u.should_delete) for page in cursor for u in page]
    assert read == [(int(i.id), i.indicator, i.type, i.last_updated, False) for i in server.indicators]
    assert client.react_to_threat_descriptor(2002, "HELPFUL") == [None, None, {"success": True}]  # error, exception
    assert server.reacted == [("2002", "HELPFUL", "")]


def test_cli_add_fetch_list_remove_and_a_fetched_hash_matches_over_the_upload_api(
    upload_settings: Settings, standin: tuple[ThreatExchangeStandin, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, url = standin
    invoke = cli_invoker(upload_settings, monkeypatch)
    assert invoke("bank", "create", "GIFCT").exit_code == 0
    no_group = invoke("exchange", "add", "te", "--type", "threatexchange", "--bank", "GIFCT", "--token", server.token)
    assert no_group.exit_code != 0 and "needs --privacy-group" in no_group.output
    assert server.secret not in no_group.output
    wrong = invoke("exchange", "add", "te", "--type", "threatexchange", "--bank", "GIFCT", "--privacy-group", "1",
                   "--user", "u", "--token", server.token)  # fmt: skip
    assert wrong.exit_code != 0 and "threatexchange takes no --user" in wrong.output
    wrong_token = f"{server.app_id}|wrong-secret-of-twenty-chars"
    check_cli_lifecycle(
        invoke, upload_settings, add=["te", "--type", "threatexchange", "--bank", "GIFCT", "--url", url,
        "--privacy-group", server.privacy_group], typed=server.token, fetched="te: 4 pages, 4 added, 0 removed, 0 "
        "skipped", listed=f"te\tthreatexchange\tGIFCT\t{url}, privacy group {server.privacy_group}\t4 entries",
        match=(H[2], [("GIFCT", "1004")]),
        wrong=["--type", "threatexchange", "--bank", "GIFCT", "--url", url, "--privacy-group", server.privacy_group,
        "--token", wrong_token], refused="OAuthException code 190", secrets=[server.secret, "wrong-secret"],
    )  # fmt: skip
    assert json.loads(credentials_path(upload_settings.keys_dir, "te").read_text()) == {"token": wrong_token}
    switched = invoke("exchange", "feedback", "te", "on")
    assert switched.exit_code == 0, switched.output
    [shown] = json.loads(invoke("exchange", "list", "--json").output)
    assert (shown["type"], shown["bank"], shown["url"], shown["feedback"]) == ("threatexchange", "GIFCT", url, True)


def feedback_call(standin: tuple[ThreatExchangeStandin, str], http: Any, remote_id: str, **given: Any) -> FeedbackCall:
    server, url = standin
    values = {"confirmed": True, "token": server.token} | given
    return FeedbackCall(
        {"url": url, "privacy_group": server.privacy_group}, Credentials({"token": values["token"]}), http,
        remote_id, "pdq", H[2], values["confirmed"], "a moderator's note",
    )  # fmt: skip


def opinion_of(server: ThreatExchangeStandin, indicator_id: str) -> SignalOpinionCategory | None:
    """Our app's opinion of an indicator as python-threatexchange reads it from threat_updates' reactions."""
    [indicator] = [i for i in server.indicators if i.id == indicator_id]
    raw = record(indicator, {"indicator", "type", "last_updated", "should_delete", "descriptors"})
    read = FBThreatExchangeIndicatorRecord.from_threatexchange_json(int(server.app_id), ThreatUpdateJSON(raw))
    assert read is not None
    mine = [o.category for o in read.opinions if o.owner_app_id == int(server.app_id)]
    return mine[0] if mine else None


async def test_feedback_reacts_to_the_other_members_descriptors_as_pytx_reads_reactions(
    standin: tuple[ThreatExchangeStandin, str],
) -> None:
    server, _url = standin
    [indicator] = [i for i in server.indicators if i.id == "1004"]
    indicator.descriptors += [Descriptor("2104", server.app_id), Descriptor("2204", "5550009999")]  # ours, another's
    assert THREATEXCHANGE.has_feedback
    async with http_client(allow_private=True) as http:
        await THREATEXCHANGE.send_feedback(feedback_call(standin, http, "1004"))
        assert server.reacted == [("2004", "HELPFUL", "DISAGREE_WITH_TAGS"), ("2204", "HELPFUL", "DISAGREE_WITH_TAGS")]
        server.reacted.clear()
        await THREATEXCHANGE.send_feedback(feedback_call(standin, http, "1002"))
        assert server.reacted == [("2002", "HELPFUL", "DISAGREE_WITH_TAGS")]
        assert opinion_of(server, "1002") is SignalOpinionCategory.POSITIVE_CLASS
        await THREATEXCHANGE.send_feedback(feedback_call(standin, http, "1002", confirmed=False))  # reversed
        assert server.reacted[1:] == [("2002", "DISAGREE_WITH_TAGS", "HELPFUL")]
        assert opinion_of(server, "1002") is SignalOpinionCategory.NEGATIVE_CLASS  # HELPFUL gone, or it would win
        await THREATEXCHANGE.send_feedback(feedback_call(standin, http, "1002", confirmed=False))  # sent again
        assert opinion_of(server, "1002") is SignalOpinionCategory.NEGATIVE_CLASS
        assert [d.reactions for d in server.indicators[1].descriptors] == [
            {"HELPFUL": [], "DISAGREE_WITH_TAGS": [server.app_id]}
        ]


async def test_feedback_reaches_descriptors_on_every_page_of_the_edge(
    standin: tuple[ThreatExchangeStandin, str],
) -> None:
    """An indicator with more descriptors than a page of its edge lists: the other members' descriptors on every
    page get the reaction. One listing more than MAX_DESCRIPTOR_PAGES pages gets none (refused whole), and a paging
    link to another host is refused before anything is sent there."""
    server, _url = standin
    server.descriptor_page_size = 2
    [indicator] = [i for i in server.indicators if i.id == "1004"]
    others = [Descriptor(str(3000 + i), str(5550002000 + i)) for i in range(4)]
    indicator.descriptors += [Descriptor("2104", server.app_id), *others]  # six: three pages, one of them ours
    async with http_client(allow_private=True) as http:
        await THREATEXCHANGE.send_feedback(feedback_call(standin, http, "1004"))
        assert [reacted for reacted, _given, _removed in server.reacted] == ["2004", "3000", "3001", "3002", "3003"]
        server.reacted.clear()
        server.descriptor_page_size = 1
        indicator.descriptors = [Descriptor(str(4000 + i), "5550009999") for i in range(MAX_DESCRIPTOR_PAGES)]
        await THREATEXCHANGE.send_feedback(feedback_call(standin, http, "1004"))
        assert len(server.reacted) == MAX_DESCRIPTOR_PAGES  # as many pages as allowed: all reached
        server.reacted.clear()
        indicator.descriptors.append(Descriptor("4999", "5550009999"))
        with pytest.raises(ExchangeError, match=f"more than {MAX_DESCRIPTOR_PAGES} pages of descriptors"):
            await THREATEXCHANGE.send_feedback(feedback_call(standin, http, "1004"))
        server.next_base = "https://elsewhere.example"
        with pytest.raises(
            ExchangeError, match=re.escape("refused ThreatExchange's paging link to https://elsewhere.example/")
        ):
            await THREATEXCHANGE.send_feedback(feedback_call(standin, http, "1004"))
    assert server.reacted == []


async def test_feedback_refusals_and_outages(standin: tuple[ThreatExchangeStandin, str]) -> None:
    server, _url = standin
    async with http_client(allow_private=True) as http:
        with pytest.raises(ExchangeError, match="does not exist, cannot be loaded") as gone:
            await THREATEXCHANGE.send_feedback(feedback_call(standin, http, "4242"))
        assert not isinstance(gone.value, ExchangeUnavailable | ExchangeAuthError)  # for good: not retried
        server.indicators[0].descriptors = [Descriptor("2001", server.app_id)]
        with pytest.raises(ExchangeError, match="no descriptor of another member"):
            await THREATEXCHANGE.send_feedback(feedback_call(standin, http, "1001"))
        with pytest.raises(ExchangeError, match="not a ThreatExchange indicator id"):
            await THREATEXCHANGE.send_feedback(feedback_call(standin, http, "../1001"))
        wrong = f"{server.app_id}|not-the-secret-but-long-enough"
        with pytest.raises(ExchangeAuthError, match="code 190") as refused:
            await THREATEXCHANGE.send_feedback(feedback_call(standin, http, "1004", token=wrong))
        assert "not-the-secret" not in str(refused.value)
        server.down = True
        with pytest.raises(ExchangeUnavailable):
            await THREATEXCHANGE.send_feedback(feedback_call(standin, http, "1004"))
    assert server.reacted == []


async def test_a_moderators_verdicts_reach_threatexchange_through_the_pipeline(
    pds_world: PdsWorld,  # noqa: F811
    make_settings: Any,
    standin: tuple[ThreatExchangeStandin, str],
) -> None:
    """A post near an indicator fetched from ThreatExchange waits in review; confirming it reacts HELPFUL on the
    indicator's descriptor (an exchange-feedback action, feedback on), negating the label later DISAGREE_WITH_TAGS."""
    server, url = standin
    harness = Harness(pds_world, make_settings, "embedded", None)
    image = encode(structured_rgb(160, 120, seed=212), "PNG")
    near = flip_bits(hash_image(image).hash, 15, seed=22)  # a match for review, too far to label unreviewed
    server.indicators.append(Indicator("1010", "HASH_PDQ", near, T0 + 90, _shared("2010")))
    post = harness.post(pds_world.account(), "p", image)
    settings = harness.settings(pipeline={"exchange_fetch_seconds": 0})
    with pds_world.pds_running():
        async with harness.running(settings, workers=1) as labeler:
            store = labeler.exchanges.store
            await store.banks.create("GIFCT")
            options = {"url": url, "privacy_group": server.privacy_group, "feedback": True}
            await store.add("te", "threatexchange", "GIFCT", options, carries=THREATEXCHANGE.signal_types)
            write_credentials(settings.keys_dir, "te", Credentials({"token": server.token}))
            async with http_client(allow_private=True) as http:
                assert (await fetch_exchange(store, "te", keys_dir=settings.keys_dir, http=http)).added == 5

            async def indexed() -> bool:
                return bool(await labeler.pipeline.matcher.lookup(near, max_distance=0))

            await eventually(indexed, within=10, what="the fetched indicator in the index")
            await labeler.pipeline.jobs.enqueue([post])
            await all_done(labeler, 1)
            [item] = await labeler.pipeline.reviews.list(status="pending", subject_uri=post.subject_uri)
            assert (item.evidence["match"]["external_id"], item.evidence["match"]["note"]) == ("1010", "exchange:te")
            verdict = await labeler.pipeline.decisions.confirm(item.id, actor="did:plc:moderator", note="it is")
            [sent] = [a for a in verdict.actions if a.kind == FEEDBACK]
            sent = await settled(labeler, sent)
            assert (sent.state, sent.outcome) == ("done", "sent")
            assert server.reacted == [("2010", "HELPFUL", "DISAGREE_WITH_TAGS")]
            reversals = await labeler.pipeline.decisions.label_negated(
                sent.subject_uri, sent.subject_cid, ["csam-hash-match"], actor="did:plc:moderator", note="was wrong"
            )
            [undo] = [a for a in reversals if a.kind == FEEDBACK]
            undo = await settled(labeler, undo)
            assert (undo.state, undo.outcome) == ("done", "sent")
    assert (undo.op, undo.reverses) == ("reverse", sent.id)
    assert server.reacted == [("2010", "HELPFUL", "DISAGREE_WITH_TAGS"), ("2010", "DISAGREE_WITH_TAGS", "HELPFUL")]
