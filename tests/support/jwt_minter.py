"""Mint atproto service-auth JWTs for tests, including the malformed and adversarial variants.

The SDK cannot create these (sdk-notes.md §7). The default token mirrors what a PDS sends with a proxied
createReport (protocol.md §4.2): header `{typ: JWT, alg}`, payload `iat, iss, aud, exp = iat + 60, lxm, jti`
(16 random bytes, hex), signature = base64url of the 64-byte low-S r‖s. Every part can be overridden or
dropped (`OMIT`), and the signature can be made high-S, DER-encoded or replaced outright.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from labeler.protocol.crypto import SigningKey

CREATE_REPORT: Final = "com.atproto.moderation.createReport"
#: Marks a header field or claim to leave out of the token.
OMIT: Final[Any] = object()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def json_segment(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def to_high_s(key: SigningKey, signature: bytes) -> bytes:
    """The other valid signature for the same message: s' = n - s (the malleable twin)."""
    s = int.from_bytes(signature[32:], "big")
    return signature[:32] + (key.curve.order - s).to_bytes(32, "big")


def to_der(signature: bytes) -> bytes:
    return encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))


def mint_jwt(
    key: SigningKey,
    *,
    iss: str,
    aud: str,
    lxm: Any = CREATE_REPORT,
    iat: Any = None,
    exp: Any = None,
    now: float = 1_750_000_000,
    ttl: int = 60,
    jti: Any = None,
    alg: Any = None,
    typ: Any = "JWT",
    header_extra: dict[str, Any] | None = None,
    payload_extra: dict[str, Any] | None = None,
    high_s: bool = False,
    der: bool = False,
    signature: bytes | None = None,
) -> str:
    """A compact JWS signed by `key`. `iat` defaults to `now`, `exp` to `iat + ttl`, `alg` to the key's curve."""
    header: dict[str, Any] = {"typ": typ, "alg": key.curve.jwt_alg if alg is None else alg}
    header.update(header_extra or {})
    iat = int(now) if iat is None else iat
    exp_value = (iat if isinstance(iat, int) else int(now)) + ttl if exp is None else exp
    payload: dict[str, Any] = {
        "iat": iat,
        "iss": iss,
        "aud": aud,
        "exp": exp_value,
        "lxm": lxm,
        "jti": secrets.token_hex(16) if jti is None else jti,
    }
    payload.update(payload_extra or {})
    return sign_parts(
        key,
        {k: v for k, v in header.items() if v is not OMIT},
        {k: v for k, v in payload.items() if v is not OMIT},
        high_s=high_s,
        der=der,
        signature=signature,
    )


def sign_parts(
    key: SigningKey,
    header: dict[str, Any],
    payload: dict[str, Any],
    *,
    high_s: bool = False,
    der: bool = False,
    signature: bytes | None = None,
) -> str:
    """Sign exactly the given header and payload (no defaults added)."""
    signing_input = f"{json_segment(header)}.{json_segment(payload)}"
    if signature is None:
        signature = key.sign(signing_input.encode("ascii"))
        if high_s:
            signature = to_high_s(key, signature)
        if der:
            signature = to_der(signature)
    return f"{signing_input}.{b64url(signature)}"


def resign(key: SigningKey, token: str) -> str:
    """Replace a token's signature with `key`'s signature over its first two parts."""
    head, body, _ = token.split(".")
    return f"{head}.{body}.{b64url(key.sign(f'{head}.{body}'.encode('ascii')))}"
