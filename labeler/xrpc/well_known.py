"""`/.well-known/did.json` for a did:web labeler on our own host, and the health endpoint."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from labeler import __version__
from labeler.config import Settings
from labeler.protocol.errors import NotFound
from labeler.service import Labeler


def did_document(settings: Settings, multikey: str) -> dict[str, Any]:
    """Our DID document: `#atproto_label` (Multikey) and `#atproto_labeler` at the public URL (SPEC-LABEL)."""
    did = settings.did
    return {
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
        "id": did,
        "verificationMethod": [
            {"id": f"{did}#atproto_label", "type": "Multikey", "controller": did, "publicKeyMultibase": multikey}
        ],
        "service": [{"id": "#atproto_labeler", "type": "AtprotoLabeler", "serviceEndpoint": settings.public_url}],
    }


async def did_json(request: Request) -> JSONResponse:
    labeler: Labeler = request.app.state.labeler
    if not labeler.settings.serves_did_web:
        raise NotFound("this labeler's DID is not a did:web of this host")
    info, _ = labeler.keyring.active()
    return JSONResponse(did_document(labeler.settings, info.multikey))


async def health(request: Request) -> JSONResponse:
    labeler: Labeler = request.app.state.labeler
    try:
        head = await labeler.store.head()
    except Exception:
        return JSONResponse({"status": "unavailable", "error": "database unreachable"}, status_code=503)
    return JSONResponse({"version": __version__, "status": "ok", "did": labeler.settings.did, "seq": head})
