"""createReport bodies over real HTTP: the lexicon output, input limits, the declaration, and Ozone's appeal rules."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from report_helpers import APPEAL, LABELER_DID, POST_CID, VIOLATION, People, create_report, report_body

from labeler.protocol import syntax
from labeler.reports.graphemes import grapheme_count
from labeler.reports.reasons import KNOWN_REASONS, NEW_TO_OLD, reason_type_problem
from labeler.service import Labeler
from labeler.testing import LiveServer, serve_labeler

OZONE = "tools.ozone.report.defs#"
STRONG = "com.atproto.repo.strongRef"
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one grapheme, 18 bytes


async def test_output_is_the_lexicon_shape(server: Any, people: People) -> None:
    body = report_body(
        people.bob.post(), reason="looks like a known image", modTool={"name": "bsky-app/android", "meta": {"v": 1}}
    )
    response = await create_report(server.url, body, people.alice.headers())
    assert response.status_code == 200, response.text
    out = response.json()
    assert set(out) == {"id", "reasonType", "reason", "subject", "reportedBy", "createdAt"}
    assert isinstance(out["id"], int) and out["id"] >= 1
    assert out["reasonType"] == VIOLATION and out["reason"] == "looks like a known image"
    assert out["subject"] == people.bob.post() and out["reportedBy"] == people.alice.did
    syntax.check_datetime(out["createdAt"])
    stored = await server.labeler.reports.store.get(out["id"])
    assert stored is not None and stored.status == "open" and stored.mod_tool == body["modTool"]

    response = await create_report(server.url, report_body(people.bob.account), people.alice.headers())
    out2 = response.json()
    assert "reason" not in out2 and out2["subject"] == people.bob.account and out2["id"] > out["id"]


BAD_BODIES: dict[str, Any] = {
    "not json": b"{nope",
    "array": b"[1]",
    "missing reasonType": {"subject": {"$type": "com.atproto.admin.defs#repoRef", "did": "did:plc:x"}},
    "reasonType not a string": {"reasonType": 3},
    "reasonType too long": {"reasonType": "a" * 300},
    "missing subject": {"reasonType": VIOLATION},
    "subject not an object": {"subject": "did:plc:x"},
    "subject unknown $type": {"subject": {"$type": "chat.bsky.convo.defs#messageRef", "did": "did:plc:x"}},
    "subject without $type": {"subject": {"did": "did:plc:x"}},
    "repoRef bad did": {"subject": {"$type": "com.atproto.admin.defs#repoRef", "did": "alice.test"}},
    "strongRef no cid": {
        "subject": {"$type": "com.atproto.repo.strongRef", "uri": "at://did:plc:x/app.bsky.feed.post/1"}
    },
    "strongRef bad cid": {
        "subject": {"$type": "com.atproto.repo.strongRef", "uri": "at://did:plc:x/app.bsky.feed.post/1", "cid": "x"}
    },
    "strongRef handle uri": {
        "subject": {"$type": STRONG, "uri": "at://alice.test/app.bsky.feed.post/1", "cid": POST_CID}
    },
    "strongRef repo uri": {"subject": {"$type": STRONG, "uri": "at://did:plc:x", "cid": POST_CID}},
    "reason not a string": {"reason": 5},
    "reason 2001 graphemes": {"reason": "é" * 2001},
    "reason over 20000 bytes": {"reason": FAMILY * 1200},
    "reason lone surrogate": b'{"reasonType": "%s", "subject": {"$type": "com.atproto.admin.defs#repoRef", '
    b'"did": "did:plc:x"}, "reason": "\\ud800"}' % VIOLATION.encode(),
    "reason NUL": {"reason": "a\x00b"},
    "modTool not an object": {"modTool": "bsky"},
    "modTool without name": {"modTool": {"meta": {}}},
    "modTool meta not an object": {"modTool": {"name": "x", "meta": 3}},
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
async def test_invalid_input_is_400(server: Any, people: People, case: str) -> None:
    body = BAD_BODIES[case]
    if isinstance(body, dict):
        body = {**report_body(people.bob.account), **body}
        if case.startswith("missing "):
            body.pop(case.removeprefix("missing "), None)
    response = await create_report(server.url, body, people.alice.headers())
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "InvalidRequest" and response.json()["message"]


async def test_reason_limits_count_graphemes_not_code_points(server: Any, people: People) -> None:
    combining = "e\u0301" * 2000  # 2000 graphemes, 4000 code points, 6000 bytes
    assert grapheme_count(combining) == 2000 and grapheme_count(FAMILY * 3) == 3
    assert grapheme_count("🇫🇷🇩🇪") == 2 and grapheme_count("\r\n") == 1
    # UAX #29 beyond marks and emoji: a ZWJ joins only pictographs, a prepended mark, a Hangul syllable in jamo,
    # a Devanagari conjunct (kṣa), and counting stops once past the limit
    assert grapheme_count("a\u200db") == 2 and grapheme_count("\u0600\u0661") == 1
    assert grapheme_count("\u1100\u1161\u11a8") == 1 and grapheme_count("\u0915\u094d\u0937") == 1
    assert grapheme_count("x" * 5000, stop_after=2000) == 2001
    body = report_body(people.bob.account, reason=combining)
    response = await create_report(server.url, body, people.alice.headers())
    assert response.status_code == 200, response.text
    assert response.json()["reason"] == combining


@pytest.mark.parametrize(
    ("reason_type", "accepted"),
    [
        (VIOLATION, True),  # declared
        (OZONE + "reasonSexualNCII", True),  # declared (new)
        (OZONE + "reasonChildSafetyCSAM", True),  # maps to the declared legacy reasonViolation
        (OZONE + "reasonRuleBanEvasion", True),  # ditto
        (OZONE + "reasonOther", True),  # maps to the declared legacy reasonOther
        ("com.atproto.moderation.defs#reasonSexual", False),  # old → new is not mapped
        (OZONE + "reasonSexualDeepfake", False),  # maps to undeclared reasonSexual
        (OZONE + "reasonMisleadingSpam", False),  # maps to undeclared reasonSpam
        ("com.atproto.moderation.defs#reasonSpam", False),
        ("com.example.custom#reasonWhatever", False),
    ],
)
async def test_reason_types_against_declaration(server: Any, people: People, reason_type: str, accepted: bool) -> None:
    response = await create_report(server.url, report_body(people.bob.post(), reason_type), people.alice.headers())
    if accepted:
        assert response.status_code == 200, response.text
        assert response.json()["reasonType"] == reason_type
    else:
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "InvalidRequest"
        assert reason_type in response.json()["message"] and "reasonTypes" in response.json()["message"]


async def test_subject_collections_enforced(server: Any, people: People) -> None:
    profile = people.bob.post("self", "app.bsky.actor.profile")
    response = await create_report(server.url, report_body(profile), people.alice.headers())
    assert response.status_code == 400
    assert "app.bsky.actor.profile" in response.json()["message"]
    assert "subjectCollections" in response.json()["message"]


@pytest.fixture
async def serve_declared(make_settings: Any, people: People) -> AsyncIterator[Any]:
    """`await serve_declared({...})` starts a labeler with that [declaration] section and serves it."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(declaration: dict[str, Any] | None) -> LiveServer:
            extra = {} if declaration is None else {"declaration": declaration}
            service = Labeler(make_settings(did=LABELER_DID, plc_url=people.plc_url, extra=extra))
            await service.start()
            stack.push_async_callback(service.aclose)
            return await stack.enter_async_context(serve_labeler(service))

        yield start


async def test_subject_types_enforced(serve_declared: Any, people: People) -> None:
    live = await serve_declared({"subject_types": ["record"]})
    response = await create_report(live.url, report_body(people.bob.account), people.alice.headers())
    assert response.status_code == 400 and "accounts" in response.json()["message"]
    response = await create_report(live.url, report_body(people.bob.post()), people.alice.headers())
    assert response.status_code == 200, response.text


async def test_empty_lists_mean_none(serve_declared: Any, people: People) -> None:
    live = await serve_declared({"reason_types": [], "subject_collections": []})
    response = await create_report(live.url, report_body(people.bob.account), people.alice.headers())
    assert response.status_code == 400 and "does not accept reports" in response.json()["message"]


async def test_no_declared_lists_accepts_every_known_reason(serve_declared: Any, people: People) -> None:
    live = await serve_declared(None)
    for reason_type in ("com.atproto.moderation.defs#reasonSpam", OZONE + "reasonSelfHarmED"):
        body = report_body(people.bob.post("x", "app.bsky.graph.list"), reason_type)
        response = await create_report(live.url, body, people.alice.headers())
        assert response.status_code == 200, response.text
    response = await create_report(live.url, report_body(people.bob.account, "com.example#x"), people.alice.headers())
    assert response.status_code == 400 and "unknown reason type" in response.json()["message"]


def test_reason_table_matches_ozone() -> None:
    assert len(NEW_TO_OLD) == 2 + 7 + 6 + 5 + 5 + 6 + 4 + 5
    assert NEW_TO_OLD[OZONE + "reasonMisleadingSpam"] == "com.atproto.moderation.defs#reasonSpam"
    assert NEW_TO_OLD[OZONE + "reasonMisleadingBot"] == "com.atproto.moderation.defs#reasonMisleading"
    assert NEW_TO_OLD[OZONE + "reasonHarassmentDoxxing"] == "com.atproto.moderation.defs#reasonRude"
    assert NEW_TO_OLD[OZONE + "reasonChildSafetyCSAM"] == VIOLATION
    assert len(KNOWN_REASONS) == len(NEW_TO_OLD) + 7
    assert reason_type_problem(OZONE + "reasonChildSafetyCSAM", [VIOLATION]) is None


async def test_appeal_only_from_the_subjects_account(server: Any, people: People) -> None:
    response = await create_report(server.url, report_body(people.alice.post(), APPEAL), people.bob.headers())
    assert response.status_code == 403 and response.json()["error"] == "Forbidden"
    response = await create_report(server.url, report_body(people.alice.account, APPEAL), people.bob.headers())
    assert response.status_code == 403
    assert await server.labeler.reports.store.list_reports(status=None) == []


async def test_appeal_by_owner_and_second_pending_appeal(server: Any, people: People) -> None:
    response = await create_report(server.url, report_body(people.alice.post(), APPEAL), people.alice.headers())
    assert response.status_code == 200, response.text
    # Appeals are not subject to the declaration: they contest our labels (an undeclared collection here).
    profile = people.alice.post("self", "app.bsky.actor.profile")
    response = await create_report(server.url, report_body(profile, OZONE + "reasonAppeal"), people.alice.headers())
    assert response.status_code == 200, response.text

    response = await create_report(server.url, report_body(people.alice.post(), APPEAL), people.alice.headers())
    assert response.status_code == 403 and response.json()["error"] == "AlreadyAppealed"
    statuses = await server.labeler.reports.store.statuses(subject_uri=people.alice.post()["uri"])
    assert statuses[0].open_appeal_count == 1 and statuses[0].to_view()["appealed"] is True


async def test_report_hook_runs_after_commit(server: Any, people: People) -> None:
    seen: list[Any] = []

    async def hook(report: Any) -> None:
        stored = await server.labeler.reports.store.get(report.id)
        seen.append((report.id, stored is not None))

    async def broken(report: Any) -> None:
        raise RuntimeError("pipeline down")

    server.labeler.reports.on_report(broken)
    server.labeler.reports.on_report(hook)
    response = await create_report(server.url, report_body(people.bob.post()), people.alice.headers())
    assert response.status_code == 200  # a failing hook is logged, the report stands
    assert seen == [(response.json()["id"], True)]
