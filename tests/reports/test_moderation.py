"""The moderation queue over real HTTP: grouping by subject, Ozone-shaped reads, actions audited with who did them,
and moderators authenticating with service auth instead of the admin password."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from report_helpers import ADMIN, APPEAL, LABELER_DID, VIOLATION, People, create_report, report_body

from labeler.reports.models import EVENT_ACKNOWLEDGE, EVENT_COMMENT, EVENT_REPORT, EVENT_RESOLVE_APPEAL

EMIT = "tools.ozone.moderation.emitEvent"
STATUSES = "tools.ozone.moderation.queryStatuses"
EVENTS = "tools.ozone.moderation.queryEvents"
REVIEW_OPEN = "tools.ozone.moderation.defs#reviewOpen"
REVIEW_CLOSED = "tools.ozone.moderation.defs#reviewClosed"
LABEL_EVENT = "tools.ozone.moderation.defs#modEventLabel"


async def xrpc(url: str, method: str, nsid: str, *, auth: Any = ADMIN, headers: Any = None, **kwargs: Any) -> Any:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        if headers is not None:
            auth = None
        return await client.request(method, f"/xrpc/{nsid}", auth=auth, headers=headers, **kwargs)


async def emit(url: str, subject: dict[str, Any], event: dict[str, Any], **kwargs: Any) -> Any:
    return await xrpc(url, "POST", EMIT, json={"subject": subject, "event": event, **kwargs.pop("extra", {})}, **kwargs)


async def seed(url: str, people: People) -> dict[str, Any]:
    """Three reports on bob's post (alice, carol, alice again) and one on bob's account."""
    ids = {}
    for name, reporter, subject in (
        ("p1", people.alice, people.bob.post()),
        ("p2", people.carol, people.bob.post()),
        ("p3", people.alice, people.bob.post()),
        ("a1", people.carol, people.bob.account),
    ):
        response = await create_report(url, report_body(subject, reason=f"r-{name}"), reporter.headers())
        assert response.status_code == 200, response.text
        ids[name] = response.json()["id"]
    return ids


async def test_reports_grouped_by_subject(server: Any, people: People) -> None:
    await seed(server.url, people)
    response = await xrpc(server.url, "GET", STATUSES)
    assert response.status_code == 200, response.text
    statuses = response.json()["subjectStatuses"]
    assert [s["subject"] for s in statuses] == [people.bob.account, people.bob.post()]  # newest report first
    account, post = statuses
    assert (post["reportCount"], post["openReportCount"], post["reviewState"]) == (3, 3, REVIEW_OPEN)
    assert (account["reportCount"], account["reviewState"], account["appealed"]) == (1, REVIEW_OPEN, False)
    assert set(post) >= {"id", "subject", "createdAt", "updatedAt", "reviewState", "lastReportedAt"}

    response = await xrpc(server.url, "GET", STATUSES, params={"sortDirection": "asc", "limit": 1})
    page = response.json()
    assert [s["subject"] for s in page["subjectStatuses"]] == [people.bob.post()] and page["cursor"]
    params = {"sortDirection": "asc", "limit": 1, "cursor": page["cursor"]}
    response = await xrpc(server.url, "GET", STATUSES, params=params)
    assert [s["subject"] for s in response.json()["subjectStatuses"]] == [people.bob.account]
    assert "cursor" not in response.json()

    response = await xrpc(server.url, "GET", STATUSES, params={"subject": people.bob.did})
    assert [s["subject"] for s in response.json()["subjectStatuses"]] == [people.bob.account]


async def test_report_events_name_the_reporter(server: Any, people: People) -> None:
    await seed(server.url, people)
    response = await xrpc(server.url, "GET", EVENTS, params={"subject": people.bob.post()["uri"]})
    assert response.status_code == 200, response.text
    events = response.json()["events"]
    assert [e["event"]["$type"] for e in events] == [EVENT_REPORT] * 3
    assert [e["createdBy"] for e in events] == [people.alice.did, people.carol.did, people.alice.did]  # newest first
    assert events[0]["event"] == {"$type": EVENT_REPORT, "reportType": VIOLATION, "comment": "r-p3"}
    assert events[0]["subject"] == people.bob.post()

    response = await xrpc(server.url, "GET", EVENTS, params={"createdBy": people.carol.did, "sortDirection": "asc"})
    assert [e["event"]["comment"] for e in response.json()["events"]] == ["r-p2", "r-a1"]


async def test_acknowledge_dismisses_and_is_audited(server: Any, people: People) -> None:
    ids = await seed(server.url, people)
    event = {"$type": EVENT_ACKNOWLEDGE, "comment": "not a match"}
    response = await emit(server.url, people.bob.post(), event, extra={"createdBy": "did:plc:moderatorbymoderatorby"})
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["event"] == event and view["createdBy"] == "did:plc:moderatorbymoderatorby"

    store = server.labeler.reports.store
    for name in ("p1", "p2", "p3"):
        report = await store.get(ids[name])
        assert report is not None and (report.status, report.resolved_by, report.note) == (
            "dismissed",
            "admin",
            event["comment"],
        )
    assert (await store.get(ids["a1"])).status == "open"  # type: ignore[union-attr]

    post = (await xrpc(server.url, "GET", STATUSES, params={"subject": people.bob.post()["uri"]})).json()
    status = post["subjectStatuses"][0]
    assert (status["reviewState"], status["openReportCount"], status["reportCount"]) == (REVIEW_CLOSED, 0, 3)
    assert status["lastReviewedBy"] == "did:plc:moderatorbymoderatorby" and status["comment"] == "not a match"
    open_only = (await xrpc(server.url, "GET", STATUSES, params={"reviewState": REVIEW_OPEN})).json()
    assert [s["subject"] for s in open_only["subjectStatuses"]] == [people.bob.account]

    events = await store.events(subject_uri=people.bob.post()["uri"])
    assert (events[0].event["$type"], events[0].actor, events[0].id) == (EVENT_ACKNOWLEDGE, "admin", view["id"])


async def test_label_event_actions_open_reports(server: Any, people: People) -> None:
    await seed(server.url, people)
    event = {"$type": LABEL_EVENT, "createLabelVals": ["csam-hash-match"], "negateLabelVals": []}
    response = await emit(server.url, people.bob.account, event)
    assert response.status_code == 200, response.text
    reports = await server.labeler.reports.store.list_reports(subject_uri=people.bob.did, status=None)
    assert [r.status for r in reports] == ["actioned"]
    events = (await xrpc(server.url, "GET", EVENTS, params={"subject": people.bob.did})).json()["events"]
    assert [e["event"]["$type"] for e in events] == [LABEL_EVENT, EVENT_REPORT]
    assert events[0]["id"] == response.json()["id"]


async def test_appeal_flow(server: Any, people: People) -> None:
    response = await create_report(server.url, report_body(people.bob.post(), APPEAL), people.bob.headers())
    appeal_id = response.json()["id"]
    await create_report(server.url, report_body(people.bob.post()), people.alice.headers())
    appealed = (await xrpc(server.url, "GET", STATUSES, params={"appealed": "true"})).json()["subjectStatuses"]
    assert [s["subject"] for s in appealed] == [people.bob.post()] and appealed[0]["lastAppealedAt"]

    # Acknowledge leaves the appeal open; resolveAppeal closes only the appeal.
    assert (await emit(server.url, people.bob.post(), {"$type": EVENT_ACKNOWLEDGE})).status_code == 200
    store = server.labeler.reports.store
    assert (await store.get(appeal_id)).status == "open"  # type: ignore[union-attr]
    assert (
        await emit(server.url, people.bob.post(), {"$type": EVENT_RESOLVE_APPEAL, "comment": "stays"})
    ).status_code == 200
    assert (await store.get(appeal_id)).status == "dismissed"  # type: ignore[union-attr]
    assert (await xrpc(server.url, "GET", STATUSES, params={"appealed": "true"})).json()["subjectStatuses"] == []
    # With the first appeal decided, the owner may appeal again.
    response = await create_report(server.url, report_body(people.bob.post(), APPEAL), people.bob.headers())
    assert response.status_code == 200, response.text


async def test_comment_needs_text_and_changes_nothing(server: Any, people: People) -> None:
    ids = await seed(server.url, people)
    response = await emit(server.url, people.bob.account, {"$type": EVENT_COMMENT})
    assert response.status_code == 400
    response = await emit(server.url, people.bob.account, {"$type": EVENT_COMMENT, "comment": "watching"})
    assert response.status_code == 200
    assert (await server.labeler.reports.store.get(ids["a1"])).status == "open"  # type: ignore[union-attr]


async def test_moderator_service_auth(server: Any, people: People) -> None:
    await seed(server.url, people)
    event = {"$type": LABEL_EVENT, "createLabelVals": ["csam-hash-match"], "negateLabelVals": []}
    response = await emit(server.url, people.bob.post(), event, headers=people.mod.headers(lxm=EMIT))
    assert response.status_code == 200, response.text
    assert response.json()["createdBy"] == people.mod.did
    label_events = await server.labeler.store.events_for(people.bob.post()["uri"])
    assert label_events[0]["actor"] == f"{people.mod.did}:{people.mod.did}"
    audit = await server.labeler.reports.store.events(subject_uri=people.bob.post()["uri"], limit=1)
    assert audit[0].actor == people.mod.did and audit[0].created_by == people.mod.did
    reports = await server.labeler.reports.store.list_reports(subject_uri=people.bob.post()["uri"], status=None)
    assert {(r.status, r.resolved_by) for r in reports} == {("actioned", people.mod.did)}

    # The fragment audience works for moderators too, and reads take their own lxm.
    headers = people.mod.headers(lxm=STATUSES, aud=f"{LABELER_DID}#atproto_labeler")
    response = await xrpc(server.url, "GET", STATUSES, headers=headers)
    assert response.status_code == 200 and len(response.json()["subjectStatuses"]) == 2
    response = await xrpc(server.url, "GET", EVENTS, headers=people.mod.headers(lxm=EVENTS))
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("who", "lxm", "status", "error"),
    [
        ("alice", EMIT, 403, "Forbidden"),  # valid token, not a moderator
        ("mod", "com.atproto.moderation.createReport", 401, "BadJwtLexiconMethod"),
        ("mod", STATUSES, 401, "BadJwtLexiconMethod"),
    ],
)
async def test_moderator_auth_rejections(
    server: Any, people: People, who: str, lxm: str, status: int, error: str
) -> None:
    event = {"$type": LABEL_EVENT, "createLabelVals": ["csam-hash-match"], "negateLabelVals": []}
    response = await emit(server.url, people.bob.post(), event, headers=getattr(people, who).headers(lxm=lxm))
    assert response.status_code == status and response.json()["error"] == error, response.text
    assert await server.labeler.store.events_for(people.bob.post()["uri"]) == []


async def test_moderator_cannot_sign_as_someone_else(server: Any, people: People) -> None:
    event = {"$type": EVENT_COMMENT, "comment": "x"}
    response = await emit(
        server.url, people.bob.post(), event, headers=people.mod.headers(lxm=EMIT), extra={"createdBy": LABELER_DID}
    )
    assert response.status_code == 400 and "own DID" in response.json()["message"]


async def test_non_moderator_cannot_read_the_queue(server: Any, people: People) -> None:
    await seed(server.url, people)
    response = await xrpc(server.url, "GET", STATUSES, headers=people.alice.headers(lxm=STATUSES))
    assert response.status_code == 403
    response = await xrpc(server.url, "GET", EVENTS, auth=None)
    assert response.status_code == 401 and response.json()["error"] == "AuthRequired"


@pytest.mark.parametrize(
    ("nsid", "params"),
    [
        (STATUSES, {"limit": "0"}),
        (STATUSES, {"limit": "101"}),
        (STATUSES, {"cursor": "x"}),
        (STATUSES, {"reviewState": "open"}),
        (STATUSES, {"appealed": "yes"}),
        (STATUSES, {"sortDirection": "up"}),
        (STATUSES, {"sortField": "priorityScore"}),
        (STATUSES, {"subject": "not a subject"}),
        (EVENTS, {"createdBy": "bob"}),
        (EVENTS, {"subject": "at://"}),
        (EVENTS, {"types": ["a"] * 21}),
    ],
)
async def test_bad_query_params_are_400(server: Any, nsid: str, params: dict[str, Any]) -> None:
    response = await xrpc(server.url, "GET", nsid, params=params)
    assert response.status_code == 400 and response.json()["error"] == "InvalidRequest", response.text
