"""Fuzz every route of the app, on SQLite and PostgreSQL: no input gets a 5xx, and the server works afterwards.

A seeded generator (no shrinking library: the inputs are small and the seed replays them exactly) sends
`LABELER_FUZZ_REQUESTS` probes per database (default 1,200), round-robin over the routes in `ROUTES`, eight at a
time: mutated valid bodies (a node replaced by a hostile value, a key dropped or added, a string poisoned with a
lone surrogate or a NUL), bytes that are not JSON or not UTF-8, deep nesting, huge numbers, hostile query strings
and path segments, WebSocket upgrades of subscribeLabels with hostile cursors, and now and then the wrong method,
content type or credentials. Most probes carry valid credentials, so they reach the code behind the auth check,
and about a third of the bodies are left valid, so labels, reports and events are written along the way.

Checked for every probe: the status is below 500 (a 503 only with `Retry-After`: a designed "busy, try again"),
every 4xx is the XRPC error shape, a WebSocket never gets an `InternalServerError` frame or close code 1011,
and nothing logs an unhandled error. Checked afterwards: the server is live and healthy, a label can be written
and read back, every page of every list (labels, events, statuses, review items) and the whole label stream from
cursor 0 still serve (a stored value that cannot be encoded would break them), and a report is accepted.

Replay a failure with `LABELER_FUZZ_SEED=<seed printed in the failure>`; explore with other seeds and counts.

**Adding a route** (a web console, a new API): the test fails until `ROUTES` has an entry for it. Add one line,
keyed by `("http" | "ws", <the route's path template>)`, whose value is a generator from `fuzzing.py`:
`query_route(params, auth=…, lxm=…, path={"name": values})` for reads, `json_route("POST", valid_body, auth=…,
lxm=…)` for JSON writes (give it a function that returns a *valid* body: the mutations make it hostile),
`upload_route()` for raw bodies, `websocket_route(params)` for WebSockets; or write a new `(rng) -> Probe`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Final

import httpx
import pytest
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from labeler.config import load_settings
from labeler.protocol.errors import XrpcError
from labeler.protocol.frames import decode_frame
from labeler.service import Labeler
from labeler.testing import LiveServer
from labeler.xrpc.app import create_app

from . import fuzzing as fz
from .callers import ADMIN, POST_CID, UPLOAD_TOKEN, VIOLATION, Callers

SEED: Final = int(os.environ.get("LABELER_FUZZ_SEED", "15"))
REQUESTS: Final = int(os.environ.get("LABELER_FUZZ_REQUESTS", "1200"))
CONCURRENCY: Final = 8

INT = fz.small_int
REVIEW_IDS = fz.choose("1", "2", "3", "0", "-1", str(2**63), "9" * 30, "abc", "1.0", "", " 1")
STATIC_FILES = fz.choose(
    "console.js", "console.css", "../templates/base.html", "..%2f..%2fpyproject.toml", "", "x" * 500
)
ANY_NSID = fz.choose("app.bsky.feed.getTimeline", "com.atproto.label.queryLabels", "a", "..", "x" * 3000, "é\x00")

# Every route of the app → how to fuzz it. `test_the_fuzz_table_covers_every_route` fails on a route missing here.
ROUTES: Final[dict[tuple[str, str], fz.Generator]] = {
    ("http", "/"): fz.query_route(),
    ("http", "/xrpc/_health"): fz.query_route(),
    ("http", "/livez"): fz.query_route(),
    ("http", "/metrics"): fz.query_route(),
    ("http", "/.well-known/did.json"): fz.query_route(),
    ("http", "/xrpc/com.atproto.label.queryLabels"): fz.query_route(
        [
            ("uriPatterns", fz.subject_uri),
            ("uriPatterns", fz.choose("*", "did:*", "at://did:plc:*")),
            ("sources", fz.choose("did:plc:labelertestlabelertest1")),
            ("limit", INT(-2, 300)),
            ("cursor", INT(-2, 400)),
        ]
    ),
    ("http", "/xrpc/com.atproto.label.subscribeLabels"): fz.query_route([("cursor", INT(0, 50))]),
    ("ws", "/xrpc/com.atproto.label.subscribeLabels"): fz.websocket_route([("cursor", INT(-1, 500))]),
    ("http", "/xrpc/tools.ozone.moderation.emitEvent"): fz.json_route(
        "POST", fz.emit_event_body, auth=fz.MODERATOR, lxm=fz.EMIT
    ),
    ("http", "/xrpc/com.atproto.moderation.createReport"): fz.json_route(
        "POST", fz.report_body, auth=fz.REPORTER, lxm=fz.CREATE_REPORT
    ),
    ("http", "/xrpc/tools.ozone.moderation.queryStatuses"): fz.query_route(
        [
            ("subject", fz.subject_uri),
            ("reviewState", fz.choose("tools.ozone.moderation.defs#reviewOpen")),
            ("appealed", fz.choose("true", "false")),
            ("sortDirection", fz.choose("asc", "desc")),
            ("sortField", fz.choose("lastReportedAt")),
            ("limit", INT(0, 101)),
            ("cursor", INT(-1, 300)),
        ],
        auth=fz.MODERATOR,
        lxm=fz.QUERY_STATUSES,
    ),
    ("http", "/xrpc/tools.ozone.moderation.queryEvents"): fz.query_route(
        [
            ("subject", fz.subject_uri),
            ("types", fz.choose("tools.ozone.moderation.defs#modEventLabel")),
            ("createdBy", fz.random_did),
            ("sortDirection", fz.choose("asc", "desc")),
            ("limit", INT(0, 101)),
            ("cursor", INT(-1, 300)),
        ],
        auth=fz.MODERATOR,
        lxm=fz.QUERY_EVENTS,
    ),
    ("http", "/xrpc/{nsid}"): fz.query_route(path={"nsid": ANY_NSID}),
    ("http", "/api/v1/hash"): fz.upload_route(),
    ("http", "/api/v1/match"): fz.upload_route(fz.hash_body),
    ("http", "/api/v1/review"): fz.query_route(
        [
            ("status", fz.choose("pending", "confirmed", "rejected", "all")),
            ("after", INT(-1, 5)),
            ("limit", INT(0, 101)),
        ],
        auth=fz.MODERATOR,
        lxm=fz.QUERY_STATUSES,
    ),
    ("http", "/api/v1/review/{item_id}"): fz.query_route(
        auth=fz.MODERATOR, lxm=fz.QUERY_STATUSES, path={"item_id": REVIEW_IDS}
    ),
    ("http", "/api/v1/review/{item_id}/confirm"): fz.json_route(
        "POST", lambda rng: {"note": "fuzz"}, auth=fz.MODERATOR, lxm=fz.EMIT, path={"item_id": REVIEW_IDS}
    ),
    ("http", "/api/v1/review/{item_id}/reject"): fz.json_route(
        "POST", lambda rng: {"note": "fuzz"}, auth=fz.MODERATOR, lxm=fz.EMIT, path={"item_id": REVIEW_IDS}
    ),
    ("http", "/console/"): fz.query_route(auth=fz.CONSOLE),
    ("http", "/console/login"): fz.form_route(
        lambda rng: {"user": rng.choice(["admin", "alice", ""]), "credential": rng.choice([ADMIN[1], "wrong"])},
        auth=fz.CONSOLE_GUEST,
    ),
    ("http", "/console/logout"): fz.form_route(lambda rng: {}, auth=fz.CONSOLE_SPARE),
    ("http", "/console/queue"): fz.query_route(
        [("done", INT(-1, 5)), ("outcome", fz.choose("confirm", "reject", "disable-entry", "<b>"))], auth=fz.CONSOLE
    ),
    ("http", "/console/items/{item_id}/decide"): fz.form_route(
        lambda rng: {"decision": rng.choice(["confirm", "reject", "disable-entry", "allow-list"]), "note": "fuzz"},
        auth=fz.CONSOLE,
        path={"item_id": REVIEW_IDS},
    ),
    ("http", "/console/items/decide"): fz.form_route(
        lambda rng: {
            "decision": rng.choice(["reject", "disable-entry", "allow-list", "confirm"]),
            "note": "fuzz",
            **{f"item-{rng.choice(['1', '2', '3', '0', '9' * 19])}": "on" for _ in range(rng.randint(0, 3))},
        },
        auth=fz.CONSOLE,
    ),
    ("http", "/console/items/{item_id}/image"): fz.query_route(auth=fz.CONSOLE, path={"item_id": REVIEW_IDS}),
    ("http", "/console/static/{path}"): fz.query_route(path={"path": STATIC_FILES}),
    ("http", "/console/reports"): fz.query_route([("done", fz.choose("acknowledge", "label", "x"))], auth=fz.CONSOLE),
    ("http", "/console/reports/act"): fz.form_route(
        lambda rng: {
            "subject": fz.subject_uri(rng),
            "action": rng.choice(["acknowledge", "resolve-appeal", "comment", "label"]),
            "labels": rng.choice(["spam", "spam, !hide", ""]),
            "comment": "fuzz",
        },
        auth=fz.CONSOLE,
    ),
    ("http", "/console/labels"): fz.query_route(
        [
            ("q", fz.subject_uri),
            ("q", fz.choose("*", "did:*", "at://did:plc:*")),
            ("cursor", INT(-2, 400)),
            ("negated", fz.choose("spam")),
        ],
        auth=fz.CONSOLE,
    ),
    ("http", "/console/labels/negate"): fz.form_route(
        lambda rng: {"uri": fz.subject_uri(rng), "cid": rng.choice(["", POST_CID]), "val": "spam", "comment": "x"},
        auth=fz.CONSOLE,
    ),
    ("http", "/console/banks"): fz.query_route([("removed", fz.choose("B", "<b>"))], auth=fz.CONSOLE),
    ("http", "/console/banks/remove"): fz.form_route(
        lambda rng: {"bank": "B", "confirm": rng.choice(["B", "b", ""])}, auth=fz.CONSOLE
    ),
    ("http", "/console/banks/import"): fz.multipart_route(
        lambda rng: {
            "bank": rng.choice(["B", "FUZZ_UPLOADS", "lower", ""]),
            "create": rng.choice(["on", "", "off"]),
            "signal": rng.choice(["", "pdq", "md5", "vpdq", "x"]),
            "format": rng.choice(["", "csv", "tsv", "text", "json"]),
        },
        fz.bank_file_body,
        auth=fz.CONSOLE,
    ),
    ("http", "/console/banks/imports/{import_id}"): fz.query_route(
        auth=fz.CONSOLE, path={"import_id": fz.choose("0123456789abcdef", "x", "", "../banks", "\x00")}
    ),
    ("http", "/console/banks/entry"): fz.form_route(
        lambda rng: {
            "bank": "B",
            "entry_id": rng.choice(["1", "2"]),
            "mode": rng.choice(["disabled", "review-only", "clear"]),
            "reason": "fuzz",
        },
        auth=fz.CONSOLE,
    ),
    ("http", "/console/history"): fz.query_route(
        [("uri", fz.subject_uri), ("uri", fz.choose("did:plc:review1"))], auth=fz.CONSOLE
    ),
    ("http", "/console/audit"): fz.query_route(
        [("before", INT(-1, 50)), ("log", fz.choose("events", "decisions", "banks", "entries", "x"))], auth=fz.CONSOLE
    ),
    ("http", "/console/settings"): fz.form_route(
        lambda rng: {"wellness": rng.choice(["blur-grey", "blur-colour", "light-blur", "none"])}, auth=fz.CONSOLE
    ),
}


def _error_names(cls: type[XrpcError] = XrpcError) -> set[str]:
    """The wire names of every XRPC error class in the app (routes define their own, e.g. ImageRejected)."""
    return {cls.name}.union(*(_error_names(sub) for sub in cls.__subclasses__()))


ERROR_NAMES: Final = _error_names()
# 5xx answers that are designed, not failures: the XRPC spec's answer to a method this server does not implement,
# and "busy, try again" with Retry-After.
DESIGNED_5XX: Final = {(501, "MethodNotImplemented"), (503, "ServiceUnavailable")}
GARBAGE_AUTH: Final = [
    "Basic !!!", "Basic " + base64.b64encode(b"admin:wrong").decode(), "Basic", "Bearer", "Bearer abc",
    "Bearer a.b.c", "Bearer eyJhbGciOiJub25lIn0.e30.", "Digest x", "Bearer " + "A" * 8000,
    "Basic " + base64.b64encode(b"admin:test-admin-password\xff").decode(), "bearer " + UPLOAD_TOKEN + "x",
]  # fmt: skip


def app_routes(routes: list[BaseRoute], prefix: str = "") -> set[tuple[str, str]]:
    """Every (kind, path template) an app serves, mounted sub-apps included."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, WebSocketRoute):
            found.add(("ws", prefix + route.path))
        elif isinstance(route, Route):
            found.add(("http", prefix + route.path))
        elif isinstance(route, Mount):
            inner = route.routes
            found |= app_routes(inner, prefix + route.path) if inner else {("http", prefix + route.path + "/{path}")}
        else:
            raise AssertionError(f"the fuzz test does not know this kind of route yet: {route!r}")
    return found


def test_the_fuzz_table_covers_every_route(tmp_path: Path) -> None:
    settings = load_settings(env={}, database_url=f"sqlite:///{tmp_path / 'l.db'}", keys_dir=str(tmp_path / "keys"))
    served = app_routes(create_app(settings, labeler=Labeler(settings)).routes)
    missing = sorted(served - ROUTES.keys())
    assert not missing, f"routes without a fuzz generator (add one line each to ROUTES in {__file__}): {missing}"
    gone = sorted(ROUTES.keys() - served)
    assert not gone, f"ROUTES names routes the app no longer has: {gone}"


@dataclass(frozen=True)
class ConsoleSession:
    """A console session cookie and its CSRF token."""

    cookie: str
    csrf: str


async def console_sessions(client: httpx.AsyncClient, base: str) -> dict[str, ConsoleSession]:
    """The sign-in page's session, and two signed-in admin sessions (the logout probes sign out their own, so
    the other probes keep reaching the code behind the session check), as a browser gets them."""
    page = await client.get(f"{base}/console/login")
    guest = ConsoleSession(page.cookies["labeler_console"], _csrf_in(page.text))
    sessions = {fz.CONSOLE_GUEST: guest}
    for name in (fz.CONSOLE, fz.CONSOLE_SPARE):
        form = {"user": ADMIN[0], "credential": ADMIN[1], "csrf": guest.csrf}
        headers = {"cookie": f"labeler_console={guest.cookie}"}
        signed_in = await client.post(f"{base}/console/login", data=form, headers=headers)
        assert signed_in.status_code == 303, signed_in.text
        cookie = signed_in.cookies["labeler_console"]
        queue = await client.get(f"{base}/console/queue", headers={"cookie": f"labeler_console={cookie}"})
        assert queue.status_code == 200, queue.text
        sessions[name] = ConsoleSession(cookie, _csrf_in(queue.text))
    return sessions


def _csrf_in(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


class Fuzzer:
    """Sends probes and records every violation of the contract (see the module docstring)."""

    def __init__(
        self, server: LiveServer, client: httpx.AsyncClient, callers: Callers, console: dict[str, ConsoleSession]
    ) -> None:
        self.server = server
        self.client = client
        self.callers = callers
        self.console = console  # fz.CONSOLE, fz.CONSOLE_SPARE and fz.CONSOLE_GUEST → session
        self.failures: list[str] = []
        self.statuses: Counter[str] = Counter()

    def headers(self, probe: fz.Probe, garbage_pick: int) -> dict[str, str]:
        headers = dict(probe.headers)
        auth = probe.auth
        if auth == fz.ADMIN:
            headers["authorization"] = "Basic " + base64.b64encode(":".join(ADMIN).encode()).decode()
        elif auth == fz.MODERATOR:
            headers.update(self.callers.moderator.bearer(probe.lxm))
        elif auth == fz.REPORTER:
            headers.update(self.callers.reporter.bearer(probe.lxm))
        elif auth == fz.UPLOAD:
            headers["authorization"] = f"Bearer {UPLOAD_TOKEN}"
        elif auth == fz.GARBAGE:
            headers["authorization"] = GARBAGE_AUTH[garbage_pick % len(GARBAGE_AUTH)]
        elif auth in self.console:
            headers["cookie"] = f"labeler_console={self.console[auth].cookie}"
        return headers

    async def send(self, probe: fz.Probe, garbage_pick: int) -> None:
        if probe.websocket:
            await self.send_websocket(probe)
            return
        url = self.server.url + probe.path + (f"?{probe.query}" if probe.query else "")
        body = probe.body
        if body is not None and probe.auth in self.console:
            body = body.replace(fz.CSRF_MARK, self.console[probe.auth].csrf.encode())
        try:
            response = await self.client.request(
                probe.method, url, headers=self.headers(probe, garbage_pick), content=body
            )
        except httpx.InvalidURL:
            self.statuses["client refused the URL"] += 1
            return
        except httpx.TransportError as exc:  # the server dropped the connection: name the probe that met it
            self.fail(probe, f"no answer: {exc!r}")
            return
        status = response.status_code
        self.statuses[f"{status // 100}xx"] += 1
        if status < 400 or probe.method == "HEAD":
            return
        if probe.path.startswith("/console/") and response.headers.get("content-type", "").startswith("text/html"):
            if status >= 500 and not (status == 503 and "retry-after" in response.headers):
                self.fail(probe, f"{status} {response.text[:300]}")
            return  # the console's error page, for people
        try:
            error = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            error = None
        if error not in ERROR_NAMES:
            self.fail(probe, f"{status} is not the XRPC error shape: {response.text[:300]}")
        elif status >= 500 and (status, error) not in DESIGNED_5XX:
            self.fail(probe, f"{status} {response.text[:300]}")
        elif status == 503 and "retry-after" not in response.headers:
            self.fail(probe, "503 without Retry-After")

    async def send_websocket(self, probe: fz.Probe) -> None:
        url = self.server.ws_url + probe.path + (f"?{probe.query}" if probe.query else "")
        try:
            async with connect(url, open_timeout=20, close_timeout=2) as ws:
                self.statuses["ws"] += 1
                with contextlib.suppress(TimeoutError):
                    frame = await asyncio.wait_for(ws.recv(), 0.3)
                    header, body = decode_frame(frame)  # type: ignore[arg-type]
                    if header.get("op") == -1 and body.get("error") in ("InternalServerError", None):
                        self.fail(probe, f"error frame {body}")
        except InvalidStatus as exc:
            if exc.response.status_code >= 500:
                self.fail(probe, f"handshake answered {exc.response.status_code}")
        except InvalidURI:
            self.statuses["client refused the URL"] += 1
        except TimeoutError:
            self.fail(probe, f"no answer to the WebSocket handshake (request line {len(url)} bytes)")
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code == 1011:
                self.fail(probe, f"closed with 1011: {exc.rcvd.reason}")
        except InvalidHandshake as exc:
            self.fail(probe, f"handshake failed: {exc!r}")

    def fail(self, probe: fz.Probe, what: str) -> None:
        self.failures.append(f"{what}\n    after {probe.describe()}")


def probes(count: int) -> list[fz.Probe]:
    """`count` probes, round-robin over the routes, each from the seeded generator."""
    rng = random.Random(SEED)
    table = sorted(ROUTES.items())
    made = []
    for n in range(count):
        (_kind, template), generate = table[n % len(table)]
        probe = generate(rng)
        probe.path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m, p=probe: p.path_params[m.group(1)], template)
        made.append(probe)
    return made


@pytest.mark.slow
async def test_no_input_gets_a_server_error_and_the_server_works_afterwards(
    server: LiveServer, labeler: Labeler, callers: Callers, caplog: pytest.LogCaptureFixture
) -> None:
    assert app_routes(create_app(labeler.settings, labeler=labeler).routes) == ROUTES.keys()
    for job in (1, 2, 3):  # review items 1-3 exist, so confirm and reject reach the queue
        await labeler.pipeline.reviews.add(job, f"did:plc:review{job}", None, ["spam"], {"bank": "B"})
    started = time.monotonic()
    todo = probes(REQUESTS)
    # The client keeps no cookies: a probe carries a console session only when its `auth` says so.
    async with httpx.AsyncClient(timeout=60, cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[]))) as client:
        fuzzer = Fuzzer(server, client, callers, await console_sessions(client, server.url))

        async def worker(first: int) -> None:
            for n in range(first, len(todo), CONCURRENCY):
                await fuzzer.send(todo[n], n)

        with caplog.at_level(logging.ERROR, logger="labeler"):
            await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
        unhandled = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        elapsed = time.monotonic() - started
        print(f"\nfuzz: {len(todo)} probes in {elapsed:.1f} s, seed {SEED}: {dict(sorted(fuzzer.statuses.items()))}")
        assert not fuzzer.failures, f"seed {SEED}, {len(fuzzer.failures)} failures:\n" + "\n".join(fuzzer.failures[:20])
        assert not unhandled, f"seed {SEED}: logged errors: {unhandled[:10]}"
        assert fuzzer.statuses["2xx"] > len(todo) // 10, fuzzer.statuses  # the probes got past validation too
        await assert_alive_and_working(server, client, labeler, callers)
        # The console session the probes used still works (only the logout probes' own session was signed out).
        cookie = {"cookie": f"labeler_console={fuzzer.console[fz.CONSOLE].cookie}"}
        assert (await client.get(f"{server.url}/console/queue", headers=cookie)).status_code == 200


async def assert_alive_and_working(
    server: LiveServer, client: httpx.AsyncClient, labeler: Labeler, callers: Callers
) -> None:
    base = server.url
    assert (await client.get(f"{base}/livez")).status_code == 200
    health = await client.get(f"{base}/xrpc/_health")
    assert health.status_code == 200 and health.json()["status"] == "ok", health.text
    subject = {"$type": "com.atproto.admin.defs#repoRef", "did": "did:plc:afterthefuzzafterthefuzz"}
    body = {
        "event": {"$type": "tools.ozone.moderation.defs#modEventLabel", "createLabelVals": ["spam"]},
        "subject": subject,
    }
    assert (await client.post(f"{base}/xrpc/{fz.EMIT}", json=body, auth=ADMIN)).status_code == 200
    labels = await client.get(f"{base}/xrpc/com.atproto.label.queryLabels?uriPatterns=did:plc:afterthefuzz*")
    assert [label["val"] for label in labels.json()["labels"]] == ["spam"]
    report = {"reasonType": VIOLATION, "subject": subject}
    headers = callers.reporter.bearer(fz.CREATE_REPORT)
    assert (await client.post(f"{base}/xrpc/{fz.CREATE_REPORT}", json=report, headers=headers)).status_code == 200
    # Everything stored along the way can still be served, page by page.
    await all_pages(client, f"{base}/xrpc/com.atproto.label.queryLabels?uriPatterns=*&limit=250", "labels")
    await all_pages(client, f"{base}/xrpc/tools.ozone.moderation.queryEvents?limit=100", "events")
    await all_pages(client, f"{base}/xrpc/tools.ozone.moderation.queryStatuses?limit=100", "subjectStatuses")
    listed = await client.get(f"{base}/api/v1/review?status=all", auth=ADMIN)
    assert listed.status_code == 200 and len(listed.json()["items"]) == 3
    head = await labeler.store.head()
    last = 0
    async with connect(f"{server.ws_url}/xrpc/com.atproto.label.subscribeLabels?cursor=0") as ws:
        while last < head:
            header, frame = decode_frame(await asyncio.wait_for(ws.recv(), 30))  # type: ignore[arg-type]
            assert header == {"op": 1, "t": "#labels"}, frame
            last = frame["seq"]


async def all_pages(client: httpx.AsyncClient, url: str, key: str) -> int:
    count, cursor = 0, None
    while True:
        response = await client.get(url + (f"&cursor={cursor}" if cursor else ""), auth=ADMIN)
        assert response.status_code == 200, response.text
        page = response.json()
        count += len(page[key])
        cursor = page.get("cursor")
        if not cursor:
            return count
