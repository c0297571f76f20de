"""A tiny PLC directory (and did:web host) for tests: serves DID documents from a dict and counts hits.

`GET /{did}` answers like plc.directory (404 unknown, 410 tombstoned); `GET /.well-known/did.json` serves
`web_document`, so the same server can stand in for a `did:web:localhost%3APORT` host. Tests mutate the
dicts while it runs (rotate a key, break a document) and read `hits` to see what the resolver fetched.
Documents come in the plc.directory form (`Multikey`, compressed) or the legacy form that the npm
`@did-plc/server` writes (`EcdsaSecp256k1VerificationKey2019`, uncompressed point; devnet.md item 4).
"""

from __future__ import annotations

import contextlib
import secrets
from collections import Counter
from collections.abc import Iterator
from typing import Any

import libipld
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from labeler.protocol.crypto import Curve, SigningKey

from .server import RunningServer, serve_in_thread

_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
_CONTEXTS = {
    Curve.K256: "https://w3id.org/security/suites/secp256k1-2019/v1",
    Curve.P256: "https://w3id.org/security/suites/ecdsa-2019/v1",
}
_LEGACY_TYPES = {
    Curve.K256: "EcdsaSecp256k1VerificationKey2019",
    Curve.P256: "EcdsaSecp256r1VerificationKey2019",
}


def new_plc_did() -> str:
    """A random, syntactically valid did:plc (24 base32 characters)."""
    return "did:plc:" + "".join(secrets.choice(_BASE32) for _ in range(24))


def legacy_multibase(key: SigningKey) -> str:
    """base58btc of the raw *uncompressed* point, no multicodec prefix (the legacy 2019 suites)."""
    curve = ec.SECP256K1() if key.curve is Curve.K256 else ec.SECP256R1()
    point = ec.EllipticCurvePublicKey.from_encoded_point(curve, key.public_key).public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return libipld.encode_multibase("z", point)


def verification_method(
    did: str, name: str, key: SigningKey, *, legacy: bool = False, relative: bool = False
) -> dict[str, Any]:
    return {
        "id": f"#{name}" if relative else f"{did}#{name}",
        "type": _LEGACY_TYPES[key.curve] if legacy else "Multikey",
        "controller": did,
        "publicKeyMultibase": legacy_multibase(key) if legacy else key.multikey,
    }


def did_document(
    did: str,
    *,
    atproto: SigningKey | None = None,
    label: SigningKey | None = None,
    handle: str | None = "alice.test",
    pds: str | None = "https://pds.example.com",
    labeler: str | None = None,
    legacy: bool = False,
    relative_ids: bool = False,
) -> dict[str, Any]:
    """A DID document as PLC renders it, with the keys and services asked for."""
    methods = [
        verification_method(did, name, key, legacy=legacy, relative=relative_ids)
        for name, key in (("atproto", atproto), ("atproto_label", label))
        if key is not None
    ]
    services = []
    if pds is not None:
        services.append({"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": pds})
    if labeler is not None:
        services.append({"id": "#atproto_labeler", "type": "AtprotoLabeler", "serviceEndpoint": labeler})
    contexts = ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"]
    contexts += sorted({_CONTEXTS[k.curve] for k in (atproto, label) if k is not None})
    document: dict[str, Any] = {"@context": contexts, "id": did}
    if handle is not None:
        document["alsoKnownAs"] = [f"at://{handle}"]
    document["verificationMethod"] = methods
    document["service"] = services
    return document


class FakePlc:
    """The state behind the app: documents by DID, per-path hit counts, and ways to misbehave."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        self.tombstoned: set[str] = set()
        #: Served verbatim instead of a document (status, body), e.g. (500, b"") or (200, b"not json").
        self.raw: dict[str, tuple[int, bytes]] = {}
        self.web_document: dict[str, Any] | None = None
        self.hits: Counter[str] = Counter()
        self.app = Starlette(
            routes=[
                Route("/.well-known/did.json", self._well_known),
                Route("/{did:path}", self._document),
            ]
        )

    def put(self, did: str, document: dict[str, Any]) -> None:
        self.documents[did] = document

    async def _document(self, request: Request) -> Response:
        did = request.path_params["did"]
        self.hits[did] += 1
        if did in self.raw:
            status, body = self.raw[did]
            return Response(body, status_code=status, media_type="application/json")
        if did in self.tombstoned:
            return JSONResponse({"message": f"DID not available: {did}"}, status_code=410)
        document = self.documents.get(did)
        if document is None:
            return JSONResponse({"message": f"DID not registered: {did}"}, status_code=404)
        return JSONResponse(document, media_type="application/did+ld+json")

    async def _well_known(self, request: Request) -> Response:
        self.hits["/.well-known/did.json"] += 1
        if self.web_document is None:
            return Response(status_code=404)
        return JSONResponse(self.web_document)


@contextlib.contextmanager
def running_fake_plc() -> Iterator[tuple[FakePlc, RunningServer]]:
    """A `FakePlc` served by real uvicorn on 127.0.0.1 until the block exits."""
    plc = FakePlc()
    with serve_in_thread(plc.app) as server:
        yield plc, server
