"""Helpers for the report tests: identities with keys in the fake PLC, request builders, the test declaration."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from support.fake_plc import FakePlc, did_document, new_plc_did
from support.jwt_minter import CREATE_REPORT, mint_jwt

from labeler.protocol.crypto import Curve, SigningKey

LABELER_DID = "did:plc:labelertestlabelertest1"
CREATE_REPORT_PATH = f"/xrpc/{CREATE_REPORT}"
ADMIN = ("admin", "test-admin-password")
VIOLATION = "com.atproto.moderation.defs#reasonViolation"
APPEAL = "com.atproto.moderation.defs#reasonAppeal"
POST_CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
# What the test labeler declares (labeler.declaration); tests of other declarations build their own labeler.
DECLARATION: dict[str, Any] = {
    "reason_types": [VIOLATION, "com.atproto.moderation.defs#reasonOther", "tools.ozone.report.defs#reasonSexualNCII"],
    "subject_types": ["account", "record"],
    "subject_collections": ["app.bsky.feed.post"],
}


@dataclass(frozen=True)
class Identity:
    """An account whose DID document (with its #atproto key) the fake PLC serves."""

    did: str
    key: SigningKey

    def token(self, *, aud: str = LABELER_DID, lxm: str = CREATE_REPORT, **overrides: Any) -> str:
        return mint_jwt(self.key, iss=self.did, aud=aud, lxm=lxm, now=time.time(), **overrides)

    def headers(self, **overrides: Any) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token(**overrides)}"}

    def post(self, rkey: str = "3kpost", collection: str = "app.bsky.feed.post") -> dict[str, str]:
        return {"$type": "com.atproto.repo.strongRef", "uri": f"at://{self.did}/{collection}/{rkey}", "cid": POST_CID}

    @property
    def account(self) -> dict[str, str]:
        return {"$type": "com.atproto.admin.defs#repoRef", "did": self.did}


@dataclass(frozen=True)
class People:
    plc: FakePlc
    plc_url: str
    alice: Identity  # k256, Multikey document
    bob: Identity  # p256
    carol: Identity  # k256, legacy document form (as the npm PLC writes it)
    mod: Identity  # a configured moderator


def register(plc: FakePlc, curve: Curve = Curve.K256, *, legacy: bool = False) -> Identity:
    did, key = new_plc_did(), SigningKey.generate(curve)
    # No PDS: the pipeline's report intake then gives up at once instead of fetching from the internet.
    plc.put(did, did_document(did, atproto=key, pds=None, legacy=legacy))
    return Identity(did, key)


def report_body(subject: dict[str, Any], reason_type: str = VIOLATION, **extra: Any) -> dict[str, Any]:
    return {"reasonType": reason_type, "subject": subject, **extra}


async def create_report(url: str, body: Any, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        if isinstance(body, bytes):
            headers = {**(headers or {}), "content-type": "application/json"}
            return await client.post(CREATE_REPORT_PATH, content=body, headers=headers, **kwargs)
        return await client.post(CREATE_REPORT_PATH, json=body, headers=headers, **kwargs)
