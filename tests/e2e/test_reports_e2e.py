"""Reports end to end on Bluesky's own PLC + PDS (devnet.md items 5–7): the real PDS proxies a user's report to our
labeler, which verifies the PDS-minted token against the real PLC, stores the report and answers through the PDS.

Our labeler gets a did:plc of its own on the devnet PLC (genesis and update operations signed here with an
operator-held rotation key, `labeler.identity.plc_directory`), with `#atproto_labeler` at `http://localhost:PORT`
(a host name: the PDS refuses IP literals). The labeler runs in this test's event loop, so every call to the PDS
is async (a blocking client would stall the labeler the PDS is waiting for).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from labeler.config import load_settings
from labeler.identity.plc import PlcState
from labeler.identity.plc_directory import PlcDirectory, create_did, update_did
from labeler.protocol.crypto import SigningKey
from labeler.service import Labeler
from labeler.testing import serve_labeler

from .harness import Account, Devnet

pytestmark = pytest.mark.devnet

CREATE_REPORT = "com.atproto.moderation.createReport"
QUERY_STATUSES = "tools.ozone.moderation.queryStatuses"
VIOLATION = "com.atproto.moderation.defs#reasonViolation"
APPEAL = "com.atproto.moderation.defs#reasonAppeal"


@dataclass
class Running:
    did: str
    url: str
    labeler: Labeler


@pytest.fixture
async def our_labeler(devnet: Devnet, tmp_path: Path) -> AsyncIterator[Running]:
    rotation, label_key = SigningKey.generate(), SigningKey.generate()
    async with PlcDirectory(devnet.plc_url) as directory:
        state = PlcState(rotation_keys=(rotation.did_key,), verification_methods={"atproto_label": label_key.did_key})
        did = await create_did(directory, state, rotation)
        settings = load_settings(
            env={},
            did=did,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'e2e.db'}",
            keys_dir=str(tmp_path / "keys"),
            plc_url=devnet.plc_url,
            moderators=devnet.bob.did,
            extra={"declaration": {"reason_types": [VIOLATION], "subject_types": ["account", "record"]}},
        )
        service = Labeler(settings)
        await service.start()
        try:
            async with serve_labeler(service) as live:
                endpoint = f"http://localhost:{live.port}"
                await update_did(directory, did, rotation, lambda s: s.with_labeler(label_key.did_key, endpoint))
                yield Running(did, live.url, service)
        finally:
            await service.aclose()


async def _session(client: httpx.AsyncClient, account: Account) -> str:
    response = await client.post(
        "/xrpc/com.atproto.server.createSession", json={"identifier": account.did, "password": account.password}
    )
    response.raise_for_status()
    return str(response.json()["accessJwt"])


async def _service_token(client: httpx.AsyncClient, access: str, aud: str, lxm: str) -> httpx.Response:
    return await client.get(
        "/xrpc/com.atproto.server.getServiceAuth",
        params={"aud": aud, "lxm": lxm},
        headers={"authorization": f"Bearer {access}"},
    )


def _post_subject(devnet: Devnet) -> dict[str, Any]:
    return {"$type": "com.atproto.repo.strongRef", "uri": devnet.post.uri, "cid": devnet.post.cid}


async def test_report_proxied_by_the_pds_is_verified_and_stored(devnet: Devnet, our_labeler: Running) -> None:
    body = {"reasonType": VIOLATION, "subject": _post_subject(devnet), "reason": "e2e: proxied through the PDS"}
    async with httpx.AsyncClient(base_url=devnet.pds_url, timeout=30) as pds:
        access = await _session(pds, devnet.alice)
        response = await pds.post(
            f"/xrpc/{CREATE_REPORT}",
            json=body,
            headers={"authorization": f"Bearer {access}", "atproto-proxy": f"{our_labeler.did}#atproto_labeler"},
        )
    assert response.status_code == 200, response.text
    out = response.json()
    stored = await our_labeler.labeler.reports.store.get(out["id"])
    assert stored is not None, "the PDS answered, but not with our report"
    assert out == stored.to_output()  # the PDS returns our response unchanged
    assert stored.reported_by == devnet.alice.did and stored.subject.uri == devnet.post.uri
    assert stored.reason == body["reason"] and stored.status == "open"


@pytest.mark.parametrize("fragment", ["", "#atproto_labeler"], ids=["bare DID aud", "did#atproto_labeler aud"])
async def test_direct_get_service_auth_token_accepted_once(devnet: Devnet, our_labeler: Running, fragment: str) -> None:
    body = {"reasonType": "tools.ozone.report.defs#reasonChildSafetyCSAM", "subject": _post_subject(devnet)}
    async with httpx.AsyncClient(base_url=devnet.pds_url, timeout=30) as pds:
        access = await _session(pds, devnet.bob)
        minted = await _service_token(pds, access, our_labeler.did + fragment, CREATE_REPORT)
    assert minted.status_code == 200, minted.text
    headers = {"authorization": f"Bearer {minted.json()['token']}"}
    async with httpx.AsyncClient(base_url=our_labeler.url, timeout=30) as labeler:
        response = await labeler.post(f"/xrpc/{CREATE_REPORT}", json=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["reportedBy"] == devnet.bob.did
        replay = await labeler.post(f"/xrpc/{CREATE_REPORT}", json=body, headers=headers)
    assert replay.status_code == 401 and replay.json()["error"] == "BadJwt"


async def test_pds_passes_our_errors_through(devnet: Devnet, our_labeler: Running) -> None:
    """Rules enforced by us reach the user through the PDS: an undeclared reason (400), someone else's appeal (403)."""
    proxy = {"atproto-proxy": f"{our_labeler.did}#atproto_labeler"}
    async with httpx.AsyncClient(base_url=devnet.pds_url, timeout=30) as pds:
        headers = {"authorization": f"Bearer {await _session(pds, devnet.bob)}", **proxy}
        spam = {"reasonType": "com.atproto.moderation.defs#reasonSpam", "subject": _post_subject(devnet)}
        undeclared = await pds.post(f"/xrpc/{CREATE_REPORT}", json=spam, headers=headers)
        appeal = {"reasonType": APPEAL, "subject": _post_subject(devnet)}
        not_yours = await pds.post(f"/xrpc/{CREATE_REPORT}", json=appeal, headers=headers)
    assert undeclared.status_code == 400 and "reasonTypes" in undeclared.json()["message"], undeclared.text
    assert not_yours.status_code == 403, not_yours.text
    assert await our_labeler.labeler.reports.store.list_reports(status=None) == []


async def test_moderator_reads_the_queue_with_service_auth(devnet: Devnet, our_labeler: Running) -> None:
    body = {"reasonType": VIOLATION, "subject": {"$type": "com.atproto.admin.defs#repoRef", "did": devnet.alice.did}}
    async with httpx.AsyncClient(base_url=devnet.pds_url, timeout=30) as pds:
        reporter_headers = {
            "authorization": f"Bearer {await _session(pds, devnet.labeler)}",
            "atproto-proxy": f"{our_labeler.did}#atproto_labeler",
        }
        assert (await pds.post(f"/xrpc/{CREATE_REPORT}", json=body, headers=reporter_headers)).status_code == 200
        bob_access = await _session(pds, devnet.bob)  # bob is the configured moderator
        minted = await _service_token(pds, bob_access, our_labeler.did, QUERY_STATUSES)
        assert minted.status_code == 200, minted.text
    async with httpx.AsyncClient(base_url=our_labeler.url, timeout=30) as labeler:
        response = await labeler.get(
            f"/xrpc/{QUERY_STATUSES}", headers={"authorization": f"Bearer {minted.json()['token']}"}
        )
    assert response.status_code == 200, response.text
    statuses = response.json()["subjectStatuses"]
    assert [(s["subject"]["did"], s["reportCount"]) for s in statuses] == [(devnet.alice.did, 1)]
