"""`/.well-known/did.json` for a did:web labeler on our own host; health, liveness and metrics endpoints."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from labeler import __version__
from labeler.config import Settings
from labeler.pipeline.match.base import matcher_ready
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
    # The keyring as it is now (one stat), not as of the last periodic reload: a rotation's new key is in the
    # document from the moment it is active, since other processes' labels are signed by it from then on.
    labeler.keyring.reload_if_changed(force=True)
    info, _ = labeler.keyring.active()
    return JSONResponse(did_document(labeler.settings, info.multikey))


async def metrics(request: Request) -> Response:
    labeler: Labeler = request.app.state.labeler
    return Response(labeler.metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def live(_request: Request) -> JSONResponse:
    """Liveness: the process answers. Readiness (database reachable) is `/xrpc/_health`."""
    return JSONResponse({"status": "alive"})


async def health(request: Request) -> JSONResponse:
    """Readiness: 503 when the database is unreachable. The matcher's state is reported, not required: labels are
    served without it, and jobs wait for it with backoff."""
    labeler: Labeler = request.app.state.labeler
    try:
        head = await labeler.store.head()
    except Exception:
        return JSONResponse({"status": "unavailable", "error": "database unreachable"}, status_code=503)
    matcher = {"kind": labeler.settings.matcher, "ready": await matcher_ready(labeler.pipeline.matcher)}
    return JSONResponse(
        {"version": __version__, "status": "ok", "did": labeler.settings.did, "seq": head, "matcher": matcher}
    )
