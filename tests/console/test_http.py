"""The console over plain HTTP, against a labeler served in-process: the image route (the fetcher's limits and
address rules, no-store), sign-in rate limiting, moderator credentials, and the session cookie (Secure over
HTTPS, refused once expired)."""

from __future__ import annotations

import asyncio
import html
import json
import re
import time
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner, Result
from pipeline.blob_server import PdsWorld
from pipeline.corpus import encode, flip_bits, structured_rgb
from pipeline.harness import Harness, all_done

from labeler.cli import cli
from labeler.config import Settings
from labeler.console.auth import COOKIE
from labeler.console.moderators import ModeratorError, ModeratorStore
from labeler.console.sessions import LIFETIME, SessionCodec, load_secret
from labeler.labels.writer import LabelRequest
from labeler.pipeline.banks import EntryInput
from labeler.pipeline.hasher import hash_image
from labeler.pipeline.policy import Rule
from labeler.service import Labeler
from labeler.store.pipeline_schema import bank_changes
from labeler.store.schema import metadata
from labeler.testing import serve_labeler

from .conftest import ADMIN_PASSWORD, LABELER_DID, VIOLATION

IMAGE = encode(structured_rgb(160, 120, seed=41), "PNG")


async def sign_in(http: httpx.AsyncClient, user: str = "admin", credential: str = ADMIN_PASSWORD) -> httpx.Response:
    page = await http.get("/console/login")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return await http.post("/console/login", data={"user": user, "credential": credential, "csrf": found.group(1)})


async def queue_one(harness: Harness, settings: Settings) -> int:
    did = harness.world.account()
    spec = harness.post(did, "one", IMAGE)
    async with harness.running(settings) as labeler:
        await harness.bank(labeler, "NEAR", [flip_bits(hash_image(IMAGE).hash, 16, seed=4)])
        await labeler.pipeline.jobs.enqueue([spec])
        await all_done(labeler, 1)
        [item] = await labeler.pipeline.reviews.list()
    return item.id


async def signed_in_get(settings: Settings, path: str) -> httpx.Response:
    """GET `path` from a labeler with `settings`, first without a session (sent to sign in), then signed in."""
    labeler = Labeler(settings)
    await labeler.start()
    try:
        async with serve_labeler(labeler) as live, httpx.AsyncClient(base_url=live.url, timeout=30) as http:
            assert (await http.get(path)).status_code == 303  # no session
            assert (await sign_in(http)).status_code == 303
            return await http.get(path)
    finally:
        await labeler.aclose()


async def fetch_image(settings: Settings, item_id: int) -> httpx.Response:
    return await signed_in_get(settings, f"/console/items/{item_id}/image")


async def test_the_image_route_fetches_like_the_pipeline_and_keeps_no_copy(
    pds_world: PdsWorld, make_settings: Any
) -> None:
    harness = Harness(pds_world, make_settings, "embedded", None)
    settings = harness.settings()
    with pds_world.pds_running():
        item_id = await queue_one(harness, settings)
        served = await fetch_image(settings, item_id)
        assert served.status_code == 200 and served.content == IMAGE
        assert served.headers["content-type"] == "image/png" and served.headers["cache-control"] == "no-store"
        assert "sandbox" in served.headers["content-security-policy"]
        hits = pds_world.pds.hits.total()

        refused = await fetch_image(harness.settings(allow_private_fetch=False), item_id)
        assert refused.status_code == 404 and "private-address" in refused.text
        assert pds_world.pds.hits.total() == hits  # refused before any byte was asked for

        too_large = await fetch_image(harness.settings(max_image_bytes=len(IMAGE) - 1), item_id)
        assert too_large.status_code == 404 and "too-large" in too_large.text
        assert too_large.headers["cache-control"] == "no-store"

        # The post's text comes from the same PDS; when it cannot, the card says why and the queue still shows.
        queue = await signed_in_get(settings, "/console/queue")
        assert queue.status_code == 200 and "not shown: pds-refused" in queue.text  # no such record
        pds_world.pds.status = 503
        queue = await signed_in_get(settings, "/console/queue")
        assert queue.status_code == 200 and "not shown: pds-unavailable" in queue.text


async def test_sign_in_is_rate_limited_and_moderators_sign_in_with_their_credential(
    server: Any, labeler: Labeler
) -> None:
    store = ModeratorStore(labeler.engine)
    for name, secret in (("admin", "long-enough-secret"), ("Bob", "long-enough-secret"), ("bob", "short")):
        with pytest.raises(ModeratorError):
            await store.add(name, secret, actor="test")
    await store.add("bob", "bob-credential-1", actor="test")
    with pytest.raises(ModeratorError, match="exists already"):
        await store.add("bob", "bob-credential-2", actor="test")
    assert [m.name for m in await store.list()] == ["bob"]
    stored = await store.credential_hash("bob")
    assert stored is not None and stored.startswith("scrypt$17$8$1$") and "bob-credential-1" not in stored

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        signed_in = await sign_in(http, "bob", "bob-credential-1")
        assert signed_in.status_code == 303
        cookie = signed_in.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
        assert "max-age=28800" in cookie and "secure" not in cookie  # plain HTTP on loopback
        assert "moderator:bob" in (await http.get("/console/queue")).text

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for _ in range(5):
            assert (await sign_in(http, "admin", "wrong")).status_code == 401
        limited = await sign_in(http, "admin", ADMIN_PASSWORD)  # even the right password, until the window passes
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0


async def test_sign_in_failures_count_per_client_as_the_admin_api_counts_them(server: Any) -> None:
    """An IPv6 client is an address's /64 and an IPv4-mapped address its IPv4 address, as for the admin API
    (`labeler.xrpc.clients.client_key`): rotating addresses within a /64 buys no more guesses. Clients are named by
    X-Forwarded-For, which uvicorn trusts from loopback as from a proxy in `LABELER_FORWARDED_ALLOW_IPS`."""

    async def attempt(address: str, credential: str) -> int:
        async with httpx.AsyncClient(base_url=server.url, timeout=30, headers={"X-Forwarded-For": address}) as http:
            return (await sign_in(http, "admin", credential)).status_code

    for n in range(5):
        assert await attempt(f"2001:db8:1:2::{n + 1:x}", "wrong") == 401
    assert await attempt("2001:db8:1:2:ffff:ffff:ffff:ffff", ADMIN_PASSWORD) == 429  # a sixth address, same /64
    assert await attempt("2001:db8:1:3::1", ADMIN_PASSWORD) == 303  # the next /64 is another client
    for _ in range(4):
        assert await attempt("203.0.113.9", "wrong") == 401
    assert await attempt("::ffff:203.0.113.9", "wrong") == 401  # the fifth failure of 203.0.113.9
    assert await attempt("203.0.113.9", ADMIN_PASSWORD) == 429
    assert await attempt("203.0.113.10", ADMIN_PASSWORD) == 303


def test_moderators_from_the_command_line(settings: Settings) -> None:
    env = {"LABELER_DATABASE_URL": settings.database_url, "LABELER_KEYS_DIR": str(settings.keys_dir)}
    runner = CliRunner(env=env)

    def run(*args: str, input: str | None = None) -> Result:
        return runner.invoke(cli, ["moderators", *args], input=input, catch_exceptions=False)

    added = run("add", "carol", input="carol-credential-1\ncarol-credential-1\n")  # prompted, twice, hidden
    assert added.exit_code == 0 and "added moderator carol" in added.output, added.output
    assert "carol-credential-1" not in added.output
    assert run("add", "dave", "--password", "short").exit_code == 1
    assert "exists already" in run("add", "carol", "--password", "another-credential").output
    listed = run("list", "--json")
    assert [m["name"] for m in json.loads(listed.output)] == ["carol"], listed.output
    assert run("remove", "carol").output == "removed moderator carol\n"
    gone = run("remove", "carol")
    assert gone.exit_code == 1 and "no moderator carol" in gone.output


async def test_a_nul_in_a_search_or_a_form_is_refused_before_the_database(server: Any) -> None:
    """The fuzz test's inputs that reached PostgreSQL (which refuses NUL in text) and came back as 500s."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        assert (await sign_in(http)).status_code == 303
        searched = await http.get("/console/labels", params={"q": "at://did:plc:x\x00*"})
        assert searched.status_code == 400 and "NUL" in searched.text
        history = await http.get("/console/history", params={"uri": "did:plc:x\x00"})
        assert history.status_code == 400
        page = await http.get("/console/reports")
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found, page.text
        acted = await http.post(
            "/console/reports/act", data={"action": "acknowledge", "subject": "\x00", "csrf": found.group(1)}
        )
        assert acted.status_code == 400 and "NUL" in acted.text
        assert (await http.get("/console/labels", params={"q": "at://did:plc:x*"})).status_code == 200


async def test_a_higher_priority_rule_puts_its_items_first_although_their_match_is_further(
    labeler: Labeler, server: Any
) -> None:
    """The queue's order: the rule's `priority` (recorded in the evidence), then distance."""
    reviews = labeler.pipeline.reviews
    ordinary, urgent = Rule("ordinary", ("*",), ("x",)), Rule("urgent", ("*",), ("x",), priority=5)
    near, _ = await reviews.add(1, "at://did:plc:a/app.bsky.feed.post/near", None, ["x"], _evidence(ordinary, 12))
    far, _ = await reviews.add(2, "at://did:plc:b/app.bsky.feed.post/far", None, ["x"], _evidence(urgent, 30))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        assert (await sign_in(http)).status_code == 303
        page = await http.get("/console/queue")
    shown = [int(i) for i in re.findall(r'<article class="card" id="item-(\d+)"', page.text)]
    assert shown == [far, near], page.text


def _evidence(rule: Rule, distance: int) -> dict[str, Any]:
    return {"match": {"bank": "NEAR", "distance": distance, "signal_type": "pdq"}, "rule": rule.to_json()}


async def test_the_operator_removes_a_bank_after_typing_its_name_and_the_change_log_keeps_who(
    labeler: Labeler, server: Any
) -> None:
    banks = labeler.pipeline.banks
    await banks.create("GONE")
    await banks.add_entries("GONE", [EntryInput(flip_bits(hash_image(IMAGE).hash, 3, seed=1))])
    await ModeratorStore(labeler.engine).add("bob", "bob-credential-1", actor="test")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        assert (await sign_in(http, "bob", "bob-credential-1")).status_code == 303
        page = await http.get("/console/banks")
        assert "/console/banks/remove" not in page.text  # the form is the operator's alone
        refused = await http.post("/console/banks/remove", data={"bank": "GONE", "confirm": "GONE", **_csrf(page)})
        assert refused.status_code == 403
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        assert (await sign_in(http)).status_code == 303
        page = await http.get("/console/banks")
        assert 'action="/console/banks/remove"' in page.text
        mistyped = await http.post("/console/banks/remove", data={"bank": "GONE", "confirm": "GONE_", **_csrf(page)})
        assert mistyped.status_code == 400 and [b.name for b in await banks.all_banks()] == ["GONE"]
        unknown = await http.post("/console/banks/remove", data={"bank": "NONE", "confirm": "NONE", **_csrf(page)})
        assert unknown.status_code == 404
        assert (await http.post("/console/banks/remove", data={"bank": "GONE", "confirm": "GONE"})).status_code == 403
        removed = await http.post("/console/banks/remove", data={"bank": "GONE", "confirm": "GONE", **_csrf(page)})
        assert removed.status_code == 303 and removed.headers["location"] == "/console/banks?removed=GONE"
        assert "Removed bank GONE" in (await http.get(removed.headers["location"])).text
    assert await banks.all_banks() == []
    async with labeler.engine.connect() as conn:
        drops = (await conn.execute(sa.select(bank_changes).where(bank_changes.c.op == "drop"))).all()
    assert [(d.bank, d.actor) for d in drops] == [("GONE", "admin")]


async def test_the_banks_list_shows_when_each_bank_last_changed(labeler: Labeler, server: Any) -> None:
    banks = labeler.pipeline.banks
    for name in ("FILLED", "EMPTY", "AGAIN"):
        await banks.create(name)
    await banks.add_entries("FILLED", [EntryInput(flip_bits(hash_image(IMAGE).hash, n, seed=n)) for n in (1, 2)])
    await banks.add_entries("AGAIN", [EntryInput(flip_bits(hash_image(IMAGE).hash, 3, seed=3))])
    await banks.drop("AGAIN", actor="cli")
    await asyncio.sleep(0.01)  # the change log's times are to the millisecond: the new AGAIN is made after the drop
    await banks.create("AGAIN")  # a bank made again under a dropped one's name has no change yet
    async with labeler.engine.connect() as conn:
        [filled] = (await conn.execute(sa.select(bank_changes).where(bank_changes.c.bank == "FILLED"))).all()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        assert (await sign_in(http)).status_code == 303
        page = (await http.get("/console/banks")).text
    shown = dict(re.findall(r'<td class="name">(\w+)</td>.*?<td class="last-change">([^<]*)</td>', page, re.S))
    assert shown == {"AGAIN": "none", "EMPTY": "none", "FILLED": filled.created_at}


async def test_an_accounts_other_matches_are_read_newest_first_whatever_their_status(labeler: Labeler) -> None:
    reviews = labeler.pipeline.reviews
    did = "did:plc:accountofinterest"
    subjects = [f"at://{did}/app.bsky.feed.post/{n}" for n in range(4)] + [did]
    neighbours = [f"at://{did}x/app.bsky.feed.post/1", f"at://{did[:-1]}/app.bsky.feed.post/1", f"at://{did}"]
    ids = {uri: (await reviews.add(n, uri, None, ["x"], {}))[0] for n, uri in enumerate(subjects + neighbours)}
    await reviews.decide(ids[subjects[1]], confirm=True, actor="cli")
    found = await reviews.of_account(did, limit=3)
    assert [i.id for i in found] == sorted((ids[uri] for uri in subjects), reverse=True)[:3]
    everything = await reviews.of_account(did, limit=50)
    assert {i.subject_uri: i.status for i in everything} == {
        uri: "confirmed" if uri == subjects[1] else "pending" for uri in subjects
    }


def _csrf(page: httpx.Response) -> dict[str, str]:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return {"csrf": found.group(1)}


async def test_the_audit_log_shows_decisions_events_and_bank_changes_with_who_and_via_what(
    labeler: Labeler, server: Any
) -> None:
    reviews, rule = labeler.pipeline.reviews, Rule("ordinary", ("*",), ("x",))
    by_console, _ = await reviews.add(1, "at://did:plc:a/app.bsky.feed.post/one", None, ["x"], _evidence(rule, 12))
    by_api, _ = await reviews.add(2, "at://did:plc:b/app.bsky.feed.post/two", None, ["x"], _evidence(rule, 14))
    await reviews.add(3, "at://did:plc:c/app.bsky.feed.post/three", None, ["x"], _evidence(rule, 16))
    account = "did:plc:reportedreportedreported"
    subject = {"$type": "com.atproto.admin.defs#repoRef", "did": account}
    await labeler.reports.submit({"reasonType": VIOLATION, "subject": subject, "reason": "look"}, "did:plc:someone")
    await labeler.pipeline.banks.create("AUDITED")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        assert (await sign_in(http)).status_code == 303
        page = await http.get("/console/queue")
        decided = await http.post(
            f"/console/items/{by_console}/decide", data={"decision": "reject", "note": "not it", **_csrf(page)}
        )
        assert decided.status_code == 303
        api = await http.post(
            f"/api/v1/review/{by_api}/confirm", auth=("admin", ADMIN_PASSWORD), json={"note": "it is"}
        )
        assert api.status_code == 200, api.text
        acted = await http.post(
            "/console/reports/act", data={"action": "comment", "subject": account, "comment": "noted", **_csrf(page)}
        )
        assert acted.status_code == 303
        emitted = await http.post(
            "/xrpc/tools.ozone.moderation.emitEvent",
            auth=("admin", ADMIN_PASSWORD),
            json={
                "event": {"$type": "tools.ozone.moderation.defs#modEventAcknowledge", "comment": "over the API"},
                "subject": subject,
                "createdBy": LABELER_DID,
            },
        )
        assert emitted.status_code == 200, emitted.text
        imported = await http.post(
            "/console/banks/import",
            data={"bank": "AUDITED", **_csrf(page)},
            files={"file": ("one.txt", f"{flip_bits(hash_image(IMAGE).hash, 3, seed=2)} e-1\n", "text/plain")},
        )
        assert imported.status_code == 303

        decisions = await http.get("/console/audit", params={"log": "decisions"})
        rows = _rows(decisions.text, "decision")
        assert [(r["who"], r["via"], r["why"]) for r in rows] == [
            ("admin", "api", "it is"),
            ("admin", "console", "not it"),
        ]
        events = _rows((await http.get("/console/audit")).text, "event")
        assert [(r["who"], r["via"], r["why"]) for r in events] == [
            (f"{LABELER_DID} (admin)", "emitEvent", "over the API"),
            (f"{LABELER_DID} (admin)", "console", "noted"),
            ("did:plc:someone (did:plc:someone)", "createReport", "look"),
        ]
        for _ in range(100):  # the import runs in the background: wait for its one batch
            if changes := _rows((await http.get("/console/audit", params={"log": "banks"})).text, "bank-change"):
                break
            await asyncio.sleep(0.05)
        assert [(r["who"], r["via"], r["type"]) for r in changes] == [("admin", "console", "imported 1 entries")]
        assert (await http.get("/console/audit", params={"log": "other"})).status_code == 400
    logged = await labeler.reports.store.events(limit=10)
    assert [e.mod_tool for e in logged if e.event.get("comment") == "noted"] == [
        {"name": "atproto-hma-labeler/console"}
    ]


def _rows(page: str, kind: str) -> list[dict[str, str]]:
    """The audit table's rows of `kind`: each cell with a class (who, via, type) and the last one (why)."""
    rows = []
    for row in re.findall(rf'<tr class="{kind}">(.*?)</tr>', page, re.S):
        cells = {name: _plain(text) for name, text in re.findall(r'<td class="(\w+)">(.*?)</td>', row, re.S)}
        cells["why"] = _plain(re.findall(r"<td>(.*?)</td>", row, re.S)[-1])
        rows.append(cells)
    return rows


def _plain(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>|\([^)]*ids[^)]*\)", " ", html).split())


async def test_each_reviewer_may_relax_the_blur_for_themselves_only(labeler: Labeler, server: Any) -> None:
    rule = Rule("ordinary", ("*",), ("x",))
    evidence = {**_evidence(rule, 12), "image": {"did": "did:plc:a", "blob_cid": "bafkreib", "media": "image"}}
    await labeler.pipeline.reviews.add(1, "at://did:plc:a/app.bsky.feed.post/one", None, ["x"], evidence)
    moderators = ModeratorStore(labeler.engine)
    await moderators.add("bob", "bob-credential-1", actor="test")

    def image_class(page: httpx.Response) -> str:
        found = re.search(r'<img class="([^"]+)" src="/console/items/', page.text)
        assert found, page.text
        return found.group(1)

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        assert (await sign_in(http, "bob", "bob-credential-1")).status_code == 303
        assert image_class(await http.get("/console/queue")) == "wellness blur-grey"  # the default
        page = await http.get("/console/settings")
        assert re.search(r'value="blur-grey" checked', page.text), page.text
        assert (await http.post("/console/settings", data={"wellness": "blur-colour"})).status_code == 403  # no CSRF
        for refused in ("none", "", "blur-grey\x00"):
            assert (await http.post("/console/settings", data={"wellness": refused, **_csrf(page)})).status_code == 400
        saved = await http.post("/console/settings", data={"wellness": "blur-colour", **_csrf(page)})
        assert saved.status_code == 303 and "Saved." in (await http.get(saved.headers["location"])).text
        assert image_class(await http.get("/console/queue")) == "wellness blur-colour"
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        assert (await sign_in(http)).status_code == 303
        assert image_class(await http.get("/console/queue")) == "wellness blur-grey"  # bob's choice is his own
    await moderators.remove("bob")
    await moderators.add("bob", "bob-credential-2", actor="test")  # a new bob starts from the default
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        assert (await sign_in(http, "bob", "bob-credential-2")).status_code == 303
        assert image_class(await http.get("/console/queue")) == "wellness blur-grey"


def _console_tables_diff(conn: Any) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    mine = ("console_moderators", "console_preferences", "console_imports", "review_items", "entry_state_changes")
    return [d for d in compare_metadata(context, metadata) if any(f"'{name}'" in repr(d) for name in mine)]


async def test_the_console_tables_match_their_definitions(labeler: Labeler) -> None:
    """Migrations 0019 (review_items.decided_via), 0020 (console_preferences), 0021 (entry_state_changes) and 0022
    (console_imports) make what the code declares."""
    async with labeler.engine.connect() as conn:
        assert await conn.run_sync(_console_tables_diff) == []


async def test_a_label_pattern_search_pages_through_every_match_as_query_labels_does(
    labeler: Labeler, server: Any
) -> None:
    account = "did:plc:pagedpagedpagedpagedpage"
    posts = [f"at://{account}/app.bsky.feed.post/p{n:03d}" for n in range(130)]
    await labeler.writer.write([LabelRequest(uri=uri, val="spam") for uri in posts])
    await labeler.writer.write(
        [LabelRequest(uri="at://did:plc:otherotherotherotherother/app.bsky.feed.post/x", val="spam")]
    )
    rows = re.compile(r'<tr class="label">.*?<code>([^<]+)</code>', re.S)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        assert (await sign_in(http)).status_code == 303
        seen: list[str] = []
        url: str | None = f"/console/labels?q=at://{account}/*"
        while url is not None:
            page = await http.get(url)
            assert page.status_code == 200, page.text
            shown = rows.findall(page.text)
            assert 0 < len(shown) <= 100
            seen += shown
            found = re.search(r'href="([^"]+)" id="next-page"', page.text)
            url = html.unescape(found.group(1)) if found else None
        assert seen == posts  # every label of the pattern once, oldest first, none of another account
        assert 'id="first-page"' in page.text  # the last page leads back to the first
        bad = await http.get(f"/console/labels?q=at://{account}/*&cursor=-1")
        assert bad.status_code == 400


def cookie_of(response: httpx.Response) -> str:
    return response.headers["set-cookie"].lower()


async def test_the_session_cookie_is_secure_when_a_trusted_proxy_says_https(server: Any) -> None:
    """HTTPS as a trusted proxy reports it (X-Forwarded-Proto from loopback, which uvicorn trusts as it trusts
    `LABELER_FORWARDED_ALLOW_IPS`): the cookie says Secure; plain HTTP: it does not."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        assert "secure" not in cookie_of(await http.get("/console/login"))
        assert "secure" not in cookie_of(await sign_in(http))
    proxied = {"x-forwarded-proto": "https"}
    async with httpx.AsyncClient(base_url=server.url, timeout=30, headers=proxied) as http:
        login = await http.get("/console/login")
        assert "; secure" in cookie_of(login)
        # httpx keeps a Secure cookie from plain http, as a browser behind the proxy would send it: by hand.
        sent = {"cookie": f"{COOKIE}={login.cookies[COOKIE]}"}
        form = {"user": "admin", "credential": ADMIN_PASSWORD, **_csrf(login)}
        signed_in = await http.post("/console/login", data=form, headers=sent)
        assert signed_in.status_code == 303 and "; secure" in cookie_of(signed_in)


async def test_the_session_cookie_is_secure_behind_an_https_public_url(make_settings: Any) -> None:
    """An https public URL means HTTPS is in front of the labeler, whatever scheme reaches it."""
    labeler = Labeler(make_settings(public_url="https://labeler.example"))
    await labeler.start()
    try:
        async with serve_labeler(labeler) as live, httpx.AsyncClient(base_url=live.url, timeout=30) as http:
            response = await http.get("/console/login")
    finally:
        await labeler.aclose()
    assert response.status_code == 200 and "; secure" in cookie_of(response)


async def test_an_expired_session_cookie_is_sent_to_sign_in(settings: Settings, server: Any) -> None:
    """A cookie whose signature and credential are good but whose expiry has passed is refused like none: the
    same cookie made a moment ago is accepted, so the expiry alone is what refuses it."""
    codec = SessionCodec(load_secret(settings.keys_dir))
    tag = codec.tag("admin\x00" + ADMIN_PASSWORD)
    fresh = codec.encode(codec.new("admin", tag))
    expired = codec.encode(codec.new("admin", tag, now=time.time() - LIFETIME - 1))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        accepted = await http.get("/console/queue", headers={"cookie": f"{COOKIE}={fresh}"})
        assert accepted.status_code == 200 and "Signed in as" in accepted.text
        refused = await http.get("/console/queue", headers={"cookie": f"{COOKIE}={expired}"})
        assert refused.status_code == 303 and refused.headers["location"] == "/console/login"
        posted = await http.post("/console/logout", headers={"cookie": f"{COOKIE}={expired}"}, data={"csrf": "x"})
        assert posted.status_code == 403
