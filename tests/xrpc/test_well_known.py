"""The did:web document and health endpoint."""

from __future__ import annotations

from typing import Any

import httpx
from atproto import DidDocument
from atproto_crypto.did import get_did_key

from labeler.service import Labeler
from labeler.testing import serve_labeler


async def test_did_web_document(make_settings: Any) -> None:
    service = Labeler(make_settings(did="", public_url="http://localhost:8080"))
    await service.start()
    try:
        async with serve_labeler(service) as live, httpx.AsyncClient(base_url=live.url) as client:
            response = await client.get("/.well-known/did.json")
    finally:
        await service.aclose()
    assert response.status_code == 200
    doc = DidDocument.from_dict(response.json())
    assert doc.id == "did:web:localhost%3A8080"
    method = next(v for v in doc.verification_method if v.id.endswith("#atproto_label"))
    assert get_did_key(method.type, method.public_key_multibase) == service.keyring.active()[0].did_key
    assert doc.get_service_endpoint("#atproto_labeler", "AtprotoLabeler") == "http://localhost:8080"


async def test_no_did_document_for_other_dids(server: Any) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.get("/.well-known/did.json")
        health = await client.get("/xrpc/_health")
    assert response.status_code == 404 and response.json()["error"] == "NotFound"
    assert health.status_code == 200 and health.json()["did"] == server.labeler.settings.did
