"""Who calls the labeler in the hostile-input tests: the operator, a moderator, a reporter and an upload client."""

from __future__ import annotations

import time
from dataclasses import dataclass

from support.jwt_minter import mint_jwt

from labeler.protocol.crypto import SigningKey

LABELER_DID = "did:plc:labelertestlabelertest1"
ADMIN = ("admin", "test-admin-password")
UPLOAD_TOKEN = "upload-token-for-hostile-tests"
POST_CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
VIOLATION = "com.atproto.moderation.defs#reasonViolation"


@dataclass(frozen=True)
class Caller:
    """An account whose DID document (with its #atproto key) the fake PLC serves."""

    did: str
    key: SigningKey

    def bearer(self, lxm: str) -> dict[str, str]:
        """A fresh service token (new `jti`) for `lxm`, as the caller's PDS would mint it."""
        token = mint_jwt(self.key, iss=self.did, aud=LABELER_DID, lxm=lxm, now=time.time())
        return {"authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Callers:
    plc_url: str
    reporter: Caller
    moderator: Caller
