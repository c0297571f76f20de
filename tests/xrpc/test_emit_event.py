"""tools.ozone.moderation.emitEvent: Ozone's label event, admin auth, and malformed bodies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from labeler.protocol import syntax

EMIT = "/xrpc/tools.ozone.moderation.emitEvent"
AUTH = ("admin", "test-admin-password")
STRONG = {
    "$type": "com.atproto.repo.strongRef",
    "uri": "at://did:plc:alice/app.bsky.feed.post/3k",
    "cid": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm",
}
REPO = {"$type": "com.atproto.admin.defs#repoRef", "did": "did:plc:bob"}


def event(create: list[str] = (), negate: list[str] = (), **extra: Any) -> dict[str, Any]:  # type: ignore[assignment]
    return {
        "$type": "tools.ozone.moderation.defs#modEventLabel",
        "createLabelVals": list(create),
        "negateLabelVals": list(negate),
        **extra,
    }


async def emit(url: str, body: Any, auth: Any = AUTH, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url) as client:
        if isinstance(body, bytes | str):
            return await client.post(EMIT, content=body, auth=auth, headers={"content-type": "application/json"})
        return await client.post(EMIT, json=body, auth=auth, **kwargs)


async def labels_for(url: str, uri: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=url) as client:
        return (await client.get("/xrpc/com.atproto.label.queryLabels", params={"uriPatterns": uri})).json()["labels"]


async def test_create_on_strong_ref_and_repo_ref(server: Any) -> None:
    response = await emit(server.url, {"event": event(["spam", "porn"]), "subject": STRONG, "createdBy": "did:plc:mod"})
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["event"]["createLabelVals"] == ["spam", "porn"]
    assert view["subject"] == STRONG and view["createdBy"] == "did:plc:mod" and view["subjectBlobCids"] == []
    assert isinstance(view["id"], int)
    syntax.check_datetime(view["createdAt"])
    labels = await labels_for(server.url, STRONG["uri"])
    assert sorted(x["val"] for x in labels) == ["porn", "spam"]
    assert all(x["cid"] == STRONG["cid"] for x in labels)

    response = await emit(server.url, {"event": event(["spam"]), "subject": REPO, "createdBy": "did:plc:mod"})
    assert response.status_code == 200
    labels = await labels_for(server.url, "did:plc:bob")
    assert [(x["val"], "cid" in x) for x in labels] == [("spam", False)]


async def test_negate(server: Any) -> None:
    await emit(server.url, {"event": event(["spam"]), "subject": REPO, "createdBy": "did:plc:mod"})
    response = await emit(server.url, {"event": event(negate=["spam"]), "subject": REPO, "createdBy": "did:plc:mod"})
    assert response.status_code == 200
    labels = await labels_for(server.url, "did:plc:bob")
    assert len(labels) == 1 and labels[0]["neg"] is True


async def test_duration_sets_exp(server: Any) -> None:
    before = datetime.now(UTC)
    body = {"event": event(["spam"], durationInHours=24), "subject": REPO, "createdBy": "did:plc:mod"}
    assert (await emit(server.url, body)).status_code == 200
    label = (await labels_for(server.url, "did:plc:bob"))[0]
    hours = (syntax.parse_datetime(label["exp"]) - before).total_seconds() / 3600
    assert 23.9 < hours < 24.1


async def test_audit_log_records_who_and_why(server: Any) -> None:
    body = {"event": event(["spam"], comment="matched bank X"), "subject": REPO, "createdBy": "did:plc:mod"}
    await emit(server.url, body)
    events = await server.labeler.store.events_for("did:plc:bob")
    assert events[0]["actor"] == "admin:did:plc:mod" and events[0]["reason"] == "matched bank X"
    assert events[0]["via"] == "emitEvent"


@pytest.mark.parametrize(
    "auth",
    [None, ("admin", "wrong"), ("root", "test-admin-password"), ("admin", "")],
    ids=["missing", "wrong-password", "wrong-user", "empty-password"],
)
async def test_bad_credentials_are_401(server: Any, auth: Any) -> None:
    response = await emit(server.url, {"event": event(["spam"]), "subject": REPO}, auth=auth)
    assert response.status_code == 401
    assert response.json()["error"] == "AuthRequired"
    assert await labels_for(server.url, "did:plc:bob") == []


async def test_garbage_bearer_token_is_401(server: Any) -> None:
    # Bearer means moderator service auth (tests/reports/test_moderators.py); a non-JWT is BadJwt.
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.post(EMIT, json={}, headers={"authorization": "Bearer abc"})
    assert response.status_code == 401 and response.json()["error"] == "BadJwt"


async def test_admin_api_closed_without_password(make_settings: Any) -> None:
    from labeler.service import Labeler
    from labeler.testing import serve_labeler

    service = Labeler(make_settings(admin_password=""))
    await service.start()
    try:
        async with serve_labeler(service) as live:
            response = await emit(live.url, {"event": event(["spam"]), "subject": REPO}, auth=("admin", ""))
    finally:
        await service.aclose()
    assert response.status_code == 401 and "LABELER_ADMIN_PASSWORD" in response.json()["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1,2]",
        {"subject": REPO},
        {"event": event(["spam"])},
        {"event": event(), "subject": REPO},
        {"event": {**event(["spam"]), "$type": "tools.ozone.moderation.defs#modEventTakedown"}, "subject": REPO},
        {"event": event(["Bad Value"]), "subject": REPO},
        {"event": event(["spam"]), "subject": {"$type": "com.atproto.admin.defs#repoRef", "did": "nope"}},
        {"event": event(["spam"]), "subject": {"$type": "com.atproto.repo.strongRef", "uri": "at://did:plc:a/x.y.z/1"}},
        {"event": event(["spam"]), "subject": {**STRONG, "cid": "notacid"}},
        {"event": event(["spam"]), "subject": {"$type": "unknown#thing"}},
        {"event": event(["spam"], durationInHours=-1), "subject": REPO},
        {"event": event(["spam"], durationInHours="24"), "subject": REPO},
        {"event": {**event(), "createLabelVals": "spam"}, "subject": REPO},
        {"event": event(["spam"]), "subject": REPO, "createdBy": "not-a-did"},
        {"event": event(["spam"] * 101), "subject": REPO},
    ],
)
async def test_malformed_bodies_are_400(server: Any, body: Any) -> None:
    response = await emit(server.url, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "InvalidRequest" and response.json()["message"]


async def test_oversized_body_is_413(server: Any) -> None:
    response = await emit(server.url, b"{" + b" " * (300 * 1024) + b"}")
    assert response.status_code == 413 and response.json()["error"] == "PayloadTooLarge"
