"""Inputs that once made the labeler answer 500, sent exactly as they came (issue #15, items 1–5, 7 and 8).

Each is refused with a 4xx before anything is written; afterwards the moderation log still serves (a stored
string that cannot be encoded would break every later `queryEvents`), and the server keeps answering.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from websockets.asyncio.client import connect

from labeler.protocol.frames import decode_frame
from labeler.service import Labeler
from labeler.testing import LiveServer

from .callers import ADMIN, POST_CID, UPLOAD_TOKEN, VIOLATION, Callers

EMIT = "/xrpc/tools.ozone.moderation.emitEvent"
REPORT = "/xrpc/com.atproto.moderation.createReport"
REVIEW = "/api/v1/review"
MATCH = "/api/v1/match"
SUBJECT = {"$type": "com.atproto.repo.strongRef", "uri": "at://did:plc:alice/app.bsky.feed.post/3k", "cid": POST_CID}
WRITTEN_TABLES = ("labels", "label_events", "reports", "report_subjects", "moderation_events", "review_items")


@pytest.fixture
async def review_id(labeler: Labeler) -> int:
    item, new = await labeler.pipeline.reviews.add(1, SUBJECT["uri"], POST_CID, ["csam-hash-match"], {"bank": "B"})
    assert new
    return item


def label_event(**extra: Any) -> dict[str, Any]:
    return {"$type": "tools.ozone.moderation.defs#modEventLabel", "createLabelVals": ["spam"], **extra}


def emit_body(**extra: Any) -> dict[str, Any]:
    return {"event": label_event(comment="seen"), "subject": SUBJECT, "modTool": {"name": "tool", "meta": {}}, **extra}


def report_body() -> dict[str, Any]:
    body = {"reasonType": VIOLATION, "subject": SUBJECT, "reason": "why", "modTool": {"name": "app", "meta": {}}}
    body["subject"] = {"$type": "com.atproto.admin.defs#repoRef", "did": "did:plc:alice"}
    return body


class Routes:
    """Every route that reads a JSON body, with a valid body and what it takes to get past authentication."""

    def __init__(self, callers: Callers, review_id: int) -> None:
        self.callers = callers
        self.review_id = review_id

    def json_routes(self) -> Iterator[tuple[str, dict[str, Any], Callable[[], dict[str, Any]]]]:
        """(path, a valid body, fresh auth headers) per JSON route; bodies are fresh copies."""
        basic = "Basic " + base64.b64encode(":".join(ADMIN).encode()).decode()

        def admin() -> dict[str, str]:
            return {"authorization": basic}

        yield EMIT, emit_body(), admin
        yield EMIT, {"event": {"$type": "tools.ozone.moderation.defs#modEventComment", "comment": "hi"},
                     "subject": SUBJECT}, admin  # fmt: skip
        yield EMIT, emit_body(), lambda: self.callers.moderator.bearer("tools.ozone.moderation.emitEvent")
        yield REPORT, report_body(), lambda: self.callers.reporter.bearer("com.atproto.moderation.createReport")
        yield MATCH, {"hash": "f" * 64}, lambda: {"authorization": f"Bearer {UPLOAD_TOKEN}"}
        yield f"{REVIEW}/{self.review_id}/reject", {"note": "no"}, admin
        yield f"{REVIEW}/{self.review_id}/confirm", {"note": "yes"}, admin


async def post_json(client: httpx.AsyncClient, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await client.post(path, content=body, headers={**headers, "content-type": "application/json"})


async def written(labeler: Labeler) -> dict[str, int]:
    async with labeler.store.engine.connect() as conn:
        return {t: (await conn.execute(sa.text(f"SELECT count(*) FROM {t}"))).scalar_one() for t in WRITTEN_TABLES}


async def assert_still_serving(client: httpx.AsyncClient) -> None:
    events = await client.get("/xrpc/tools.ozone.moderation.queryEvents", auth=ADMIN)
    assert events.status_code == 200, events.text
    labels = await client.get("/xrpc/com.atproto.label.queryLabels", params={"uriPatterns": "*"})
    assert labels.status_code == 200, labels.text
    assert (await client.get(REVIEW, params={"status": "all"}, auth=ADMIN)).status_code == 200


def assert_refused(response: httpx.Response, what: str) -> None:
    assert 400 <= response.status_code < 500, f"{what}: {response.status_code} {response.text}"
    assert response.json()["error"], what


# Item 1: integer parameters such as `--5` passed the digit check and then failed int().

INTEGER_PARAMS = [
    ("/xrpc/com.atproto.label.queryLabels?uriPatterns=*", "limit"),
    ("/xrpc/com.atproto.label.queryLabels?uriPatterns=*", "cursor"),
    ("/xrpc/tools.ozone.moderation.queryStatuses?", "limit"),
    ("/xrpc/tools.ozone.moderation.queryStatuses?", "cursor"),
    ("/xrpc/tools.ozone.moderation.queryEvents?", "limit"),
    ("/xrpc/tools.ozone.moderation.queryEvents?", "cursor"),
    (f"{REVIEW}?", "limit"),
    (f"{REVIEW}?", "after"),
]
BAD_INTEGERS = ["--5", "-+5", "+5", "5-", "-", "", " 5", "5 ", "0x10", "1_0", "1e3", "\u0665", "9" * 30, "%00"]


async def test_malformed_integer_parameters_are_400(client: httpx.AsyncClient) -> None:
    for path, name in INTEGER_PARAMS:
        for raw in BAD_INTEGERS:
            response = await client.get(f"{path}&{name}={raw}", auth=ADMIN)
            assert response.status_code == 400, (path, name, raw, response.text)
            assert response.json()["error"] == "InvalidRequest"


@pytest.mark.parametrize("cursor", ["--5", "-5", "5-", "\u0665", "9" * 30])
async def test_subscribe_labels_refuses_a_malformed_cursor_with_invalid_request(
    server: LiveServer, cursor: str
) -> None:
    async with connect(f"{server.ws_url}/xrpc/com.atproto.label.subscribeLabels?cursor={cursor}") as ws:
        header, body = decode_frame(await ws.recv())  # type: ignore[arg-type]
    assert header == {"op": -1} and body["error"] == "InvalidRequest", body


# Item 2: deeply nested JSON raised RecursionError.

NESTED = ["[" * 100_000, '{"a":' * 100_000, "[" * 990 + "]" * 990]


async def test_deeply_nested_json_is_400_on_every_json_route(
    client: httpx.AsyncClient, labeler: Labeler, callers: Callers, review_id: int
) -> None:
    before = await written(labeler)
    for path, valid, auth in Routes(callers, review_id).json_routes():
        for raw in NESTED:
            assert_refused(await post_json(client, path, raw.encode(), auth()), f"{path} {raw[:12]}")
        # Nesting inside an otherwise valid body, past the depth limit (and in a field stored as given).
        deep: Any = "x"
        for _ in range(40):
            deep = {"k": deep}
        body = copy.deepcopy(valid) | {"extra": deep}
        assert_refused(await post_json(client, path, json.dumps(body).encode(), auth()), f"{path} depth 40")
    assert await written(labeler) == before
    await assert_still_serving(client)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
async def test_numbers_json_cannot_carry_are_400(
    client: httpx.AsyncClient, labeler: Labeler, callers: Callers, review_id: int, number: str
) -> None:
    """Python's json reads NaN and ±Infinity (and overflows 1e999 to inf); stored, they would break every response."""
    for path, valid, auth in Routes(callers, review_id).json_routes():
        raw = json.dumps(valid | {"n": "HERE"}).replace('"HERE"', number).encode()
        assert_refused(await post_json(client, path, raw, auth()), f"{path} {number}")
    assert await written(labeler) == dict.fromkeys(WRITTEN_TABLES, 0) | {"review_items": 1}
    await assert_still_serving(client)


# Item 3: review ids at or past 2^63 overflowed the database driver.


@pytest.mark.parametrize(
    "item_id", [str(2**63 - 1), str(2**63), str(2**64), "9" * 30, "9" * 5000, "0", "-1"], ids=lambda i: i[:8]
)
async def test_review_ids_out_of_range_are_404(client: httpx.AsyncClient, item_id: str, review_id: int) -> None:
    for method, suffix in (("GET", ""), ("POST", "/confirm"), ("POST", "/reject")):
        response = await client.request(method, f"{REVIEW}/{item_id}{suffix}", auth=ADMIN)
        assert response.status_code == 404, (method, suffix, response.text)
        assert response.json()["error"] == "NotFound"
    assert (await client.get(f"{REVIEW}/{review_id}", auth=ADMIN)).status_code == 200


async def test_a_review_decision_with_a_body_that_is_not_an_object_decides_nothing(
    client: httpx.AsyncClient, labeler: Labeler, review_id: int
) -> None:
    for body in (b'"a note"', b"[]", b"null", b"1"):
        for decision in ("confirm", "reject"):
            response = await post_json(client, f"{REVIEW}/{review_id}/{decision}", body, {})
            assert response.status_code == 401  # the credentials come first
            response = await client.post(f"{REVIEW}/{review_id}/{decision}", content=body, auth=ADMIN)
            assert response.status_code == 400, (body, response.text)
    assert (await labeler.pipeline.reviews.get(review_id)).status == "pending"


# Item 4: a `$type` that is a list or an object was used as a dictionary key or set member.

TYPE_CONFUSION: list[Any] = [["tools.ozone.moderation.defs#modEventComment"], {"a": 1}, 5, None, True, 1.5]


async def test_type_fields_of_the_wrong_json_type_are_400(
    client: httpx.AsyncClient, labeler: Labeler, callers: Callers
) -> None:
    before = await written(labeler)
    for value in TYPE_CONFUSION:
        for body in (
            emit_body(event=label_event() | {"$type": value}),
            emit_body(subject={**SUBJECT, "$type": value}),
            emit_body(event={"$type": "tools.ozone.moderation.defs#modEventAcknowledge", "resolution": value}),
        ):
            response = await client.post(EMIT, json=body, auth=ADMIN)
            assert_refused(response, f"emitEvent {value!r}")
        for key in ("reasonType", "subject"):
            body = report_body() | {key: value}
            headers = callers.reporter.bearer("com.atproto.moderation.createReport")
            assert_refused(await client.post(REPORT, json=body, headers=headers), f"createReport {key}={value!r}")
        body = report_body()
        body["subject"]["$type"] = value
        headers = callers.reporter.bearer("com.atproto.moderation.createReport")
        assert_refused(await client.post(REPORT, json=body, headers=headers), f"createReport subject.$type={value!r}")
    assert await written(labeler) == before


# Items 5, 7 and 8: a lone surrogate or a NUL in any client string was stored, or failed after something was.


def string_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths to every string leaf of a JSON value, and to every object (where a key can be added)."""
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        yield (*path, None)  # None: add a poisoned key here
        for key, item in value.items():
            yield from string_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from string_paths(item, (*path, index))


def poisoned(body: Any, path: tuple[Any, ...], poison: str) -> Any:
    body = copy.deepcopy(body)
    target = body
    for step in path[:-1]:
        target = target[step]
    if path[-1] is None:
        target["k" + poison] = "v"
    else:
        target[path[-1]] += poison
    return body


@pytest.mark.parametrize("poison", ["\ud800", "\udfff", "\x00"], ids=["high-surrogate", "low-surrogate", "nul"])
async def test_lone_surrogates_and_nul_in_any_body_string_are_refused_before_anything_is_written(
    client: httpx.AsyncClient, labeler: Labeler, callers: Callers, review_id: int, poison: str
) -> None:
    before = await written(labeler)
    for path, valid, auth in Routes(callers, review_id).json_routes():
        for where in string_paths(valid):
            body = json.dumps(poisoned(valid, where, poison)).encode()  # json.dumps writes \ud800 / \u0000 escapes
            assert_refused(await post_json(client, path, body, auth()), f"{path} at {where}")
    assert await written(labeler) == before
    await assert_still_serving(client)


async def test_mod_tool_name_surrogate_publishes_no_label(client: httpx.AsyncClient, labeler: Labeler) -> None:
    body = emit_body(modTool={"name": "\ud800"})
    response = await client.post(EMIT, content=json.dumps(body), auth=ADMIN)  # httpx's json= cannot encode it
    assert response.status_code == 400, response.text
    assert await labeler.store.query(["*"], [], 0, 10) == []
    await assert_still_serving(client)


async def test_nul_in_a_label_events_comment_commits_nothing(client: httpx.AsyncClient, labeler: Labeler) -> None:
    response = await client.post(EMIT, json=emit_body(event=label_event(comment="a\x00b")), auth=ADMIN)
    assert response.status_code == 400, response.text
    assert await written(labeler) == dict.fromkeys(WRITTEN_TABLES, 0)


async def test_comment_event_with_a_surrogate_leaves_query_events_working(
    client: httpx.AsyncClient, labeler: Labeler
) -> None:
    for comment in ("\ud800", "ok \udc00 ok"):
        body = {
            "event": {"$type": "tools.ozone.moderation.defs#modEventComment", "comment": comment},
            "subject": SUBJECT,
        }
        assert (await client.post(EMIT, content=json.dumps(body), auth=ADMIN)).status_code == 400
    good = {"event": {"$type": "tools.ozone.moderation.defs#modEventComment", "comment": "fine"}, "subject": SUBJECT}
    assert (await client.post(EMIT, json=good, auth=ADMIN)).status_code == 200
    events = await client.get("/xrpc/tools.ozone.moderation.queryEvents", auth=ADMIN)
    assert events.status_code == 200 and [e["event"]["comment"] for e in events.json()["events"]] == ["fine"]


STRING_PARAMS = [
    ("/xrpc/com.atproto.label.queryLabels?uriPatterns=*", ["uriPatterns", "sources"]),
    ("/xrpc/tools.ozone.moderation.queryStatuses?", ["subject", "reviewState", "appealed", "sortDirection"]),
    ("/xrpc/tools.ozone.moderation.queryEvents?", ["subject", "types", "createdBy", "sortDirection"]),
    (f"{REVIEW}?", ["status"]),
]


async def test_nul_in_query_parameters_is_400(client: httpx.AsyncClient) -> None:
    for path, names in STRING_PARAMS:
        for name in names:
            for raw in ("%00", "did:plc:a%00", "at://did:plc:a/b/c%00", "x%00y"):
                response = await client.get(f"{path}&{name}={raw}", auth=ADMIN)
                assert response.status_code == 400, (path, name, raw, response.text)
            # Not UTF-8: decoded with replacement characters, so an ordinary (if unusual) string.
            response = await client.get(f"{path}&{name}=%ED%A0%80%FF", auth=ADMIN)
            assert response.status_code < 500, (path, name, response.text)
    await assert_still_serving(client)
