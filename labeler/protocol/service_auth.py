"""Inter-service auth JWTs as a labeler receives them on createReport (protocol.md §4.2–4.3, SPEC-XRPC).

Parses `Authorization: Bearer <jwt>` and verifies the token more strictly than the `atproto` SDK does
(sdk-notes.md §7): `exp` and `lxm` are required, `typ` values of other token kinds and unknown `alg`s are
refused, `alg` must match the issuer's key curve, `aud` may be the bare DID or `did#atproto_labeler`, and a
token seen before is refused. It does no I/O: the caller passes `get_key`, which resolves an issuer's `#atproto`
key (see `labeler.identity`), and a `ReplayGuard` that remembers tokens (the database's, `labeler.store.token_uses`),
and maps the XRPC errors raised here onto HTTP responses.

Every token is single use. Its id is its `jti`; a token without one (every reference minter sends one, but the spec
does not require it) is identified by the SHA-256 of its signed header and payload, so it is single use too. A
token must expire within `max_lifetime` (default one hour, the most `com.atproto.server.getServiceAuth` grants;
PDSes give proxied calls 60 s) plus a minute of clock skew, which also bounds how long a token id is remembered.

Choices where the reference is silent or looser (all errors are 401):
- a replayed token is `BadJwt` "jwt replayed" (no reference name: the TS and Go verifiers leave jti as a TODO);
- an `exp` too far ahead is `BadJwt` (the PDS refuses to mint one; the verifiers do not check);
- a forbidden `typ` is `BadJwt` (the TS verifier says `BadJwtType`, which our error set does not have);
- an `alg` that does not match the issuer's key is `BadJwtSignature`, as in TS (its verifier throws there);
- `iss` must be a bare DID: TS accepts `did#service` issuers, but a report is signed with the user's
  `#atproto` key, so a fragment names an identity we do not verify; indigo refuses them too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeGuard

from labeler.protocol.crypto import Curve, key_curve, verify
from labeler.protocol.errors import (
    AuthRequired,
    BadJwt,
    BadJwtAudience,
    BadJwtIss,
    BadJwtLexiconMethod,
    BadJwtSignature,
    JwtExpired,
)
from labeler.protocol.syntax import is_did

#: Longest `Authorization` token accepted; real service JWTs are ~500 bytes.
MAX_TOKEN_LENGTH: Final = 8 * 1024
#: Clock skew allowed on `exp`/`iat`/`nbf`, in seconds (indigo uses 5 s).
DEFAULT_LEEWAY: Final = 5
#: Longest a token may still be valid, in seconds: `getServiceAuth` grants at most one hour.
DEFAULT_MAX_LIFETIME: Final = 3600
#: Clock skew allowed on top of the maximum lifetime (the issuer's clock may run ahead of ours).
LIFETIME_SKEW: Final = 60
#: Header `typ` values of tokens that are not service tokens (the TS verifier refuses the same three).
FORBIDDEN_TYPS: Final = frozenset({"at+jwt", "refresh+jwt", "dpop+jwt"})
#: `kid` values that name the key we verify with; any other `kid` asks for a key we do not use.
_ATPROTO_KID: Final = "#atproto"
_MAX_JTI_LENGTH: Final = 256
_B64URL_RE: Final = re.compile(r"[A-Za-z0-9_-]*")
_ALGS: Final = frozenset(curve.jwt_alg for curve in Curve)

#: `get_key(iss, force_refresh)` → the issuer's `#atproto` did:key, or None if it has none.
GetKey = Callable[[str, bool], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class ParsedJwt:
    """A JWS compact token split and decoded, not yet verified."""

    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class ServiceAuth:
    """The verified claims of a service token; `iss` is the DID the request acts for."""

    iss: str
    aud: str
    lxm: str
    exp: float
    iat: float | None
    jti: str | None


class ReplayGuard(Protocol):
    """Remembers the tokens it has seen until they expire; shared by every process that verifies them."""

    async def first_use(self, iss: str, token_id: str, expires_at: float, now: float) -> bool:
        """Record `(iss, token_id)` until `expires_at`; False if it was recorded before (a replay)."""
        ...


def bearer_token(authorization: str | None) -> str:
    """The token from an `Authorization` header value; `AuthRequired` if absent or not Bearer."""
    if not authorization or not authorization.strip():
        raise AuthRequired("authorization required")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":  # auth schemes are case-insensitive (RFC 9110 §11.1)
        raise AuthRequired("authorization must use the Bearer scheme")
    token = token.strip()
    if not token:
        raise AuthRequired("empty bearer token")
    return token


def parse_jwt(token: str) -> ParsedJwt:
    """Split and decode a compact JWS; `BadJwt` on any malformation. Checks nothing about the claims."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise BadJwt(f"jwt too large (over {MAX_TOKEN_LENGTH} bytes)")
    parts = token.split(".")
    if len(parts) != 3:
        raise BadJwt("poorly formatted jwt: expected 3 dot-separated parts")
    header = _decode_json_segment(parts[0], "header")
    payload = _decode_json_segment(parts[1], "payload")
    signature = _b64url_decode(parts[2], "signature")
    return ParsedJwt(header, payload, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)


async def verify_service_jwt(
    token: str,
    *,
    audiences: Iterable[str],
    lxm: str,
    get_key: GetKey,
    now: float | None = None,
    leeway: int = DEFAULT_LEEWAY,
    max_lifetime: float = DEFAULT_MAX_LIFETIME,
    replay: ReplayGuard | None = None,
) -> ServiceAuth:
    """Verify a service JWT for the method `lxm` addressed to one of `audiences`; returns its claims.

    `audiences` is normally `{our_did, our_did + "#atproto_labeler"}` (protocol.md §4.2 item 4).
    The signature is checked against `get_key(iss, False)`; if that fails, the key is fetched again with
    `force_refresh=True` and tried once more, in case the issuer rotated it. Exceptions raised by `get_key`
    propagate unchanged. Raises the `AuthRequired` family from `labeler.protocol.errors`.
    """
    if isinstance(audiences, str):
        raise TypeError("audiences must be a collection of strings, not one string")
    now = time.time() if now is None else now
    parsed = parse_jwt(token)
    header, payload = parsed.header, parsed.payload
    alg = _check_header(header)
    claims = _check_payload_types(payload)

    if now > claims.exp + leeway:
        raise JwtExpired("jwt expired")
    if claims.exp > now + max_lifetime + LIFETIME_SKEW:
        raise BadJwt(f"jwt expires too far ahead: at most {max_lifetime:g} s from now are accepted")
    if claims.iat is not None and claims.iat > now + leeway:
        raise BadJwt("jwt issued in the future (iat)")
    nbf = payload.get("nbf")
    if nbf is not None and nbf > now + leeway:
        raise BadJwt("jwt not yet valid (nbf)")
    if claims.aud not in set(audiences):
        raise BadJwtAudience("jwt audience does not match service did")
    if claims.lxm is None:
        raise BadJwtLexiconMethod(f'missing jwt lexicon method ("lxm"). must match: {lxm}')
    if claims.lxm != lxm:
        raise BadJwtLexiconMethod(f'bad jwt lexicon method ("lxm"). must match: {lxm}')
    if "#" in claims.iss:
        # The TS verifier accepts `did#service` issuers; reports are signed for a user, with the user's
        # #atproto key, so a fragment can only mean a service identity we do not verify (protocol.md §4.3).
        raise BadJwtIss("jwt iss must be a bare DID (service issuers did#fragment are not accepted)")
    if not is_did(claims.iss):
        raise BadJwtIss("jwt iss is not a valid did")
    kid = header.get("kid")
    if kid is not None and kid not in (_ATPROTO_KID, claims.iss + _ATPROTO_KID):
        # We always verify with #atproto (protocol.md §4.3); a kid naming another key asks for something else.
        raise BadJwt("jwt kid must name the issuer's #atproto key")

    await _verify_signature(parsed, alg, claims.iss, get_key)

    # Recorded only after the signature verified, so forged tokens cannot burn a real jti.
    if replay is not None and not await replay.first_use(claims.iss, token_id(parsed), claims.exp + leeway, now):
        raise BadJwt("jwt replayed: this token was already used")
    return ServiceAuth(claims.iss, claims.aud, lxm, claims.exp, claims.iat, claims.jti)


def token_id(parsed: ParsedJwt) -> str:
    """What makes a token single use: `jti:<jti>`, or for a token without one `sha256:<hex of header.payload>`
    (the signature is left out: a high-S twin of the same signature is the same token)."""
    jti = parsed.payload.get("jti")
    if isinstance(jti, str):
        return f"jti:{jti}"
    return "sha256:" + hashlib.sha256(parsed.signing_input).hexdigest()


@dataclass(frozen=True, slots=True)
class _Claims:
    iss: str
    aud: str
    exp: float
    iat: float | None
    lxm: str | None
    jti: str | None


def _check_header(header: dict[str, Any]) -> str:
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise BadJwt("poorly formatted jwt: header has no alg")
    if alg not in _ALGS:
        raise BadJwt(f"unsupported jwt alg {alg[:20]!r}; expected ES256K or ES256")
    typ = header.get("typ")
    if typ is not None:
        if not isinstance(typ, str):
            raise BadJwt("poorly formatted jwt: typ is not a string")
        if typ.lower() in FORBIDDEN_TYPS:
            raise BadJwt(f"invalid jwt type {typ!r}")
    if "crit" in header:  # RFC 7515 §4.1.11: extensions we do not understand must be refused
        raise BadJwt("jwt crit header extensions are not supported")
    return alg


def _check_payload_types(payload: dict[str, Any]) -> _Claims:
    iss, aud, exp = payload.get("iss"), payload.get("aud"), payload.get("exp")
    iat, lxm, jti = payload.get("iat"), payload.get("lxm"), payload.get("jti")
    if not isinstance(iss, str) or not iss:
        raise BadJwtIss("jwt iss is missing or not a string")
    if not isinstance(aud, str):
        raise BadJwt("poorly formatted jwt: aud must be a string")
    if not _is_number(exp):
        raise BadJwt("poorly formatted jwt: exp is required and must be a number")
    if iat is not None and not _is_number(iat):
        raise BadJwt("poorly formatted jwt: iat must be a number")
    if "nbf" in payload and not _is_number(payload["nbf"]):
        raise BadJwt("poorly formatted jwt: nbf must be a number")
    if lxm is not None and not isinstance(lxm, str):
        raise BadJwt("poorly formatted jwt: lxm must be a string")
    if jti is not None and (not isinstance(jti, str) or not 0 < len(jti) <= _MAX_JTI_LENGTH):
        raise BadJwt("poorly formatted jwt: jti must be a non-empty string")
    return _Claims(iss, aud, exp, iat, lxm, jti)


async def _verify_signature(parsed: ParsedJwt, alg: str, iss: str, get_key: GetKey) -> None:
    key = await get_key(iss, False)
    if key is None:
        raise BadJwtIss("jwt iss has no #atproto signing key")
    if _signature_ok(key, alg, parsed):
        return
    fresh = await get_key(iss, True)  # the issuer may have rotated its key since we cached it
    if fresh is None:
        raise BadJwtIss("jwt iss has no #atproto signing key")
    if fresh != key and _signature_ok(fresh, alg, parsed):
        return
    if not _alg_matches(fresh, alg):
        raise BadJwtSignature(f"jwt alg {alg} does not match the issuer's key type")
    raise BadJwtSignature("jwt signature does not match jwt issuer")


def _signature_ok(did_key: str, alg: str, parsed: ParsedJwt) -> bool:
    # High-S is allowed for JWTs, as the TS (`allowMalleableSig`) and Go (`HashAndVerifyLenient`) verifiers do.
    return _alg_matches(did_key, alg) and verify(did_key, parsed.signing_input, parsed.signature, allow_high_s=True)


def _alg_matches(did_key: str, alg: str) -> bool:
    try:
        return key_curve(did_key).jwt_alg == alg
    except ValueError:
        return False


def _is_number(value: object) -> TypeGuard[float]:
    # 1e400 parses as inf, which would make a token that never expires.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _b64url_decode(segment: str, what: str) -> bytes:
    # JWS uses unpadded base64url (RFC 7515 §2); anything else is not a token we minted or expect.
    if not _B64URL_RE.fullmatch(segment) or len(segment) % 4 == 1:
        raise BadJwt(f"poorly formatted jwt: {what} is not base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise BadJwt(f"poorly formatted jwt: {what} is not base64url") from exc


def _decode_json_segment(segment: str, what: str) -> dict[str, Any]:
    raw = _b64url_decode(segment, what)
    try:
        value = json.loads(raw, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadJwt(f"poorly formatted jwt: {what} is not JSON") from exc
    if not isinstance(value, dict):
        raise BadJwt(f"poorly formatted jwt: {what} is not a JSON object")
    return value


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Duplicate claims are how two JSON parsers come to disagree about one token; refuse them.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
