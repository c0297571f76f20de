"""queryLabels over real HTTP: patterns, sources, paging, case-sensitivity, signatures, and bad parameters."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from typing import Any

import httpx
import pytest
from atproto import AsyncClient, models
from atproto_crypto.verify import verify_signature

from labeler.labels.writer import LabelRequest
from labeler.protocol.crypto import Curve
from labeler.protocol.label import Label
from labeler.service import Labeler
from labeler.store.labels import LabelAction, query_statement
from labeler.xrpc.query_labels import encode_page

POST = "at://did:plc:alice/app.bsky.feed.post/"
QUERY = "/xrpc/com.atproto.label.queryLabels"


async def _seed(labeler: Labeler, uris: list[str], val: str = "spam") -> None:
    await labeler.writer.write([LabelRequest(uri=u, val=val) for u in uris])


async def _query(url: str, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url) as client:
        return await client.get(QUERY, params=params)


async def test_exact_prefix_and_star(server: Any) -> None:
    uris = [f"{POST}a1", f"{POST}a2", f"{POST}b1", "did:plc:alice", "did:plc:bob"]
    await _seed(server.labeler, uris)
    exact = (await _query(server.url, uriPatterns=f"{POST}a1")).json()
    assert [x["uri"] for x in exact["labels"]] == [f"{POST}a1"]
    prefix = (await _query(server.url, uriPatterns=f"{POST}a*")).json()
    assert [x["uri"] for x in prefix["labels"]] == [f"{POST}a1", f"{POST}a2"]
    both = (await _query(server.url, uriPatterns=[f"{POST}b1", "did:plc:b*"])).json()
    assert [x["uri"] for x in both["labels"]] == [f"{POST}b1", "did:plc:bob"]
    everything = (await _query(server.url, uriPatterns="*")).json()
    assert [x["uri"] for x in everything["labels"]] == uris
    assert "cursor" not in everything


async def test_underscore_percent_and_case_match_exactly(server: Any) -> None:
    uris = [f"{POST}A_b", f"{POST}AxB", f"{POST}a_b", "did:web:host%3A80", "did:web:hostX3A80"]
    await _seed(server.labeler, uris)
    for pattern, expected in [
        (f"{POST}A_b", [f"{POST}A_b"]),
        (f"{POST}A_*", [f"{POST}A_b"]),
        (f"{POST}a*", [f"{POST}a_b"]),
        (f"{POST}A*", [f"{POST}A_b", f"{POST}AxB"]),
        ("did:web:host%*", ["did:web:host%3A80"]),
        ("did:web:host%3A80", ["did:web:host%3A80"]),
    ]:
        got = (await _query(server.url, uriPatterns=pattern)).json()
        assert [x["uri"] for x in got["labels"]] == expected, pattern


async def test_sources_filter(server: Any) -> None:
    await _seed(server.labeler, [f"{POST}x"])
    own = server.labeler.settings.did
    assert len((await _query(server.url, uriPatterns="*", sources=own)).json()["labels"]) == 1
    assert (await _query(server.url, uriPatterns="*", sources="did:plc:someoneelse")).json()["labels"] == []


async def test_paging_is_deterministic_and_ends_without_cursor(server: Any) -> None:
    uris = [f"{POST}p{i:03d}" for i in range(120)]
    await _seed(server.labeler, uris)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"uriPatterns": "*", "limit": 50}
        if cursor:
            params["cursor"] = cursor
        body = (await _query(server.url, **params)).json()
        seen += [x["uri"] for x in body["labels"]]
        pages += 1
        cursor = body.get("cursor")
        if not cursor:
            break
    assert seen == uris and pages == 3
    default = (await _query(server.url, uriPatterns="*")).json()
    assert len(default["labels"]) == 50
    exact_fit = (await _query(server.url, uriPatterns=f"{POST}p00*", limit=10)).json()
    assert len(exact_fit["labels"]) == 10 and "cursor" not in exact_fit


async def test_pattern_and_source_combinations_match_a_plain_filter(labeler: Labeler) -> None:
    # Every shape of request (each takes its own SQL, and on SQLite some run on the store's own read connection)
    # against the obvious in-memory filter, with labels from a second source committed straight into the store.
    own = labeler.settings.did
    other = "did:plc:othersourceothersource"
    uris = [f"{POST}a1", f"{POST}a2", f"{POST}b1", "did:plc:alice", "did:plc:bob", f"{POST}A1"]
    await _seed(labeler, uris)
    info, key = labeler.keyring.active()
    foreign = [Label(src=other, uri=u, val="spam", cts="2026-01-01T00:00:00.000Z").signed(key) for u in uris[::2]]
    await labeler.store.commit([LabelAction(label=x, key_id=info.id, actor="test", via="test") for x in foreign])
    everything = await labeler.store.query(["*"], [], 0, 100)
    assert len(everything) == len(uris) + len(foreign)

    def expected(patterns: list[str], sources: list[str], cursor: int, limit: int) -> list[int]:
        def matches(uri: str) -> bool:
            return any(uri == p or (p.endswith("*") and uri.startswith(p[:-1])) for p in patterns)

        rows = [r for r in everything if r.seq > cursor and matches(r.label.uri)]
        return [r.seq for r in rows if not sources or r.label.src in sources][:limit]

    middle = everything[len(everything) // 2].seq
    shapes = [["*"], [f"{POST}a1"], [f"{POST}a1", "did:plc:bob", f"{POST}a1"], [f"{POST}a*"], [f"{POST}a*", "did:*"]]
    shapes += [[f"{POST}b1", f"{POST}a*"], ["did:plc:alice*", "*"], ["at://*"]]
    for patterns in shapes:
        for sources in ([], [own], [other], [own, other], ["did:plc:nobody"], ["did:plc:nobody", other]):
            for cursor, limit in ((0, 100), (0, 1), (middle, 100)):
                got = await labeler.store.query(patterns, sources, cursor, limit)
                assert [r.seq for r in got] == expected(patterns, sources, cursor, limit), (patterns, sources)


async def test_query_pages_walks_every_match_in_seq_order_in_bounded_pages(labeler: Labeler) -> None:
    # 7 matches among 10 labels: pages of 3 are 3, 3, 1; pages of 7 are one full page and no empty one after it.
    await _seed(labeler, [f"{POST}a{i}" for i in range(7)] + ["did:plc:alice", "did:plc:bob", f"{POST}b1"])
    matching = [r.seq for r in await labeler.store.query([f"{POST}a*"], [], 0, 100)]
    assert len(matching) == 7
    for page, sizes in ((3, [3, 3, 1]), (7, [7]), (100, [7])):
        pages = [[r.seq for r in rows] async for rows in labeler.store.query_pages([f"{POST}a*"], [], page=page)]
        assert [len(p) for p in pages] == sizes
        assert [seq for p in pages for seq in p] == matching
        assert [r.seq async for r in labeler.store.iter_query([f"{POST}a*"], [], page=page)] == matching
    after = [r.seq async for rows in labeler.store.query_pages([f"{POST}a*"], [], after=matching[2]) for r in rows]
    assert after == matching[3:]
    assert [rows async for rows in labeler.store.query_pages(["did:plc:nobody"], [])] == []


async def test_no_query_shape_walks_the_labels_table_on_sqlite(labeler: Labeler) -> None:
    """Every shape reads an index (bare `*` the table's own, in seq order from the cursor): a URI or a source with
    no labels costs a seek, never a walk over every label (SQLite has no statistics to choose by)."""
    if not labeler.settings.is_sqlite:
        pytest.skip("SQLite's query plans")
    await _seed(labeler, [f"{POST}a1", "did:plc:alice"])
    own = labeler.settings.did
    shapes = [["*"], [f"{POST}a1"], [f"{POST}a*"], [f"{POST}a1", "did:*"], ["at://*"]]
    with contextlib.closing(sqlite3.connect(labeler.engine.url.database or "")) as conn:
        for patterns in shapes:
            for sources in ([], [own], ["did:plc:nobody", own]):
                sql, params, _cheap = query_statement(True, patterns, sources, 0, 50)
                plan = [row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
                steps = [step for step in plan if step.startswith(("SEARCH labels", "SCAN labels"))]
                assert steps and all(step.startswith("SEARCH labels") for step in steps), (patterns, sources, plan)
                if patterns != ["*"] or sources:  # bare `*` alone may read the table by rowid (= seq)
                    assert all(" INDEX " in step for step in steps), (patterns, sources, plan)


async def test_a_busy_sqlite_read_connection_falls_back_to_the_pool(
    labeler: Labeler, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite: bounded queries run on the store's own read connection, on the event loop, with no busy wait; when
    # SQLite refuses it (a WAL recovery or reset in progress) the request takes the pooled connection instead.
    if not labeler.settings.is_sqlite:
        pytest.skip("SQLite's read connection")
    await _seed(labeler, [f"{POST}busy"])
    assert [row.label.uri for row in await labeler.store.query(["*"], [], 0, 10)] == [f"{POST}busy"]

    class Busy:
        def execute(self, *_args: Any) -> Any:
            raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(labeler.store._reader, "get", lambda _engine: Busy())
    for patterns in (["*"], [f"{POST}busy"]):
        assert [row.label.uri for row in await labeler.store.query(patterns, [], 0, 10)] == [f"{POST}busy"]


async def test_negation_and_relabel_replace_the_row(server: Any) -> None:
    labeler = server.labeler
    first = await labeler.writer.write_one(LabelRequest(uri=f"{POST}n", val="spam"))
    negated = await labeler.writer.write_one(LabelRequest(uri=f"{POST}n", val="spam", neg=True))
    body = (await _query(server.url, uriPatterns=f"{POST}n")).json()
    assert len(body["labels"]) == 1 and body["labels"][0]["neg"] is True
    assert negated.seq > first.seq
    again = await labeler.writer.write_one(LabelRequest(uri=f"{POST}n", val="spam"))
    body = (await _query(server.url, uriPatterns=f"{POST}n")).json()
    assert len(body["labels"]) == 1 and "neg" not in body["labels"][0] and again.seq > negated.seq


@pytest.mark.parametrize("curve", list(Curve))
async def test_labels_verify_with_the_sdk(make_settings: Any, curve: Curve, tmp_path: Any) -> None:
    from labeler.keys import Keyring
    from labeler.testing import serve_labeler

    settings = make_settings()
    Keyring.open(settings.keys_dir).generate(curve, activate=True)
    service = Labeler(settings)
    await service.start()
    try:
        exp = "2099-01-01T00:00:00.000Z"
        await service.writer.write(
            [
                LabelRequest(uri=f"{POST}s1", val="spam"),
                LabelRequest(
                    uri=f"{POST}s2", val="porn", cid="bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
                ),
                LabelRequest(uri="did:plc:carol", val="spam", exp=exp),
                LabelRequest(uri=f"{POST}s1", val="nudity", neg=True),
            ]
        )
        did_key = service.keyring.active()[0].did_key
        async with serve_labeler(service) as live:
            # The SDK's own client as the peer: invoke_query gives the raw body (its model cannot parse $bytes).
            client = AsyncClient(base_url=f"{live.url}/xrpc")
            params = models.ComAtprotoLabelQueryLabels.Params(uri_patterns=["*"])
            try:
                response = await client.invoke_query("com.atproto.label.queryLabels", params=params)
            finally:
                await client.request.close()
            labels = response.content["labels"]
    finally:
        await service.aclose()
    assert len(labels) == 4
    for raw in labels:
        label = Label.from_json(raw)
        assert label.sig is not None
        assert verify_signature(did_key, label.signing_bytes(), label.sig)
        assert raw["ver"] == 1 and "$type" not in raw


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "uriPatterns"),
        ({"uriPatterns": "a*b"}, "invalid pattern"),
        ({"uriPatterns": "**"}, "invalid pattern"),
        ({"uriPatterns": "at://did:plc:a\x00*"}, "NUL characters"),
        ({"uriPatterns": ["did:plc:a", "did:plc:a\x00"]}, "NUL characters"),
        ({"uriPatterns": ""}, "empty"),
        ({"uriPatterns": "*", "limit": "0"}, "limit"),
        ({"uriPatterns": "*", "limit": "251"}, "limit"),
        ({"uriPatterns": "*", "limit": "ten"}, "limit"),
        ({"uriPatterns": "*", "limit": ["1", "2"]}, "limit"),
        ({"uriPatterns": "*", "cursor": "abc"}, "cursor"),
        ({"uriPatterns": "*", "cursor": "-5"}, "cursor"),
        ({"uriPatterns": "*", "cursor": "1" * 40}, "cursor"),
        ({"uriPatterns": "*", "cursor": "１２"}, "cursor"),
        ({"uriPatterns": "*", "sources": "not-a-did"}, "sources"),
        ({"uriPatterns": ["x"] * 101}, "uriPatterns"),
        ({"uriPatterns": "x" * 9000}, "too long"),
    ],
)
async def test_malformed_parameters_are_400_invalid_request(server: Any, params: dict[str, Any], message: str) -> None:
    response = await _query(server.url, **params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "InvalidRequest" and message in body["message"]


async def test_labels_signed_by_a_retired_key_come_back_re_signed(server: Any) -> None:
    labeler = server.labeler
    uris = [f"{POST}r{i}" for i in range(3)]
    await _seed(labeler, uris)
    old = labeler.keyring.active()[0]
    new = labeler.keyring.generate(activate=True)
    assert labeler.keyring.active()[0].id == new.id != old.id
    before = await labeler.store.query(uris, [], 0, 10)
    assert {row.key_id for row in before} == {old.id}
    for pattern in ([uris[0], uris[1]], "*"):  # the exact-URI and the `*` read paths
        body = (await _query(server.url, uriPatterns=pattern)).json()
        assert body["labels"], pattern
        for raw in body["labels"]:
            assert Label.from_json(raw).verify(new.did_key), raw
            assert not Label.from_json(raw).verify(old.did_key)
    after = await labeler.store.query(uris, [], 0, 10)
    assert [row.seq for row in after] == [row.seq for row in before]  # same seq, new signature persisted
    assert [row.label.cts for row in after] == [row.label.cts for row in before]
    assert {row.key_id for row in after} == {new.id}


def test_page_encoding_is_exactly_label_to_json() -> None:
    sig = bytes(range(64))
    labels = [
        Label(src="did:plc:src", uri=f"{POST}plain", val="spam", cts="2026-01-01T00:00:00.000Z", sig=sig),
        Label(
            src="did:plc:src",
            uri=f'{POST}quote"back\\slash\x01tab\tünïcode\u2028',
            val="!hide",
            cts="2026-01-01T00:00:00.000Z",
            cid="bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm",
            neg=True,
            exp="2099-01-01T00:00:00.000Z",
            sig=sig[:63],  # base64 padding dropped
        ),
        Label(src="did:plc:src", uri="did:plc:x", val="porn", cts="2026-01-01T00:00:00Z", sig=b"\xff" * 65),
    ]
    rows = [(n, x.src, x.uri, x.cid or "", x.val, int(x.neg), x.cts, x.exp, x.sig, "k") for n, x in enumerate(labels)]
    expected = {"labels": [x.to_json() for x in labels]}
    body = encode_page(rows, None)
    assert body == json.dumps(expected, ensure_ascii=False, separators=(",", ":")).encode()
    assert json.loads(encode_page(rows, 12345)) == {**expected, "cursor": "12345"}
    assert json.loads(encode_page([], None)) == {"labels": []}
