"""Service-auth JWT verification (labeler.protocol.service_auth): what we reject, what we accept, and why.

Most cases use an in-memory key lookup and a pinned clock; the rotation cases go through a real
`DidResolver` against the fake PLC over HTTP. Tokens come from tests/support/jwt_minter.py, plus a few
minted by Bluesky's reference `@atproto/xrpc-server` (tests/support/vectors/).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.fake_plc import FakePlc, did_document, new_plc_did, running_fake_plc
from support.jwt_minter import (
    CREATE_REPORT,
    OMIT,
    b64url,
    json_segment,
    mint_jwt,
    resign,
    sign_parts,
    to_high_s,
)
from support.server import RunningServer

from labeler.identity import DidResolver
from labeler.protocol.crypto import Curve, SigningKey
from labeler.protocol.errors import (
    AuthRequired,
    BadJwt,
    BadJwtAudience,
    BadJwtIss,
    BadJwtLexiconMethod,
    BadJwtSignature,
    JwtExpired,
)
from labeler.protocol.service_auth import (
    MAX_TOKEN_LENGTH,
    ServiceAuth,
    bearer_token,
    parse_jwt,
    verify_service_jwt,
)

NOW = 1_750_000_000
LABELER = "did:plc:labelerlabelerlabelerabc"
AUDIENCES = frozenset({LABELER, f"{LABELER}#atproto_labeler"})
VECTORS = Path(__file__).parents[1] / "support" / "vectors" / "xrpc_server_service_jwts.json"

K256 = SigningKey.generate(Curve.K256)
P256 = SigningKey.generate(Curve.P256)
OTHER = SigningKey.generate(Curve.K256)
ISS = "did:plc:reporterreporterreporter"
P256_ISS = "did:plc:reporterp256reporterp256"


@dataclass
class KeyBook:
    """An in-memory `get_key` that records how it was called."""

    keys: dict[str, str] = field(default_factory=lambda: {ISS: K256.did_key, P256_ISS: P256.did_key})
    calls: list[tuple[str, bool]] = field(default_factory=list)

    async def __call__(self, iss: str, force_refresh: bool) -> str | None:
        self.calls.append((iss, force_refresh))
        return self.keys.get(iss)


class SeenTokens:
    """An in-memory `ReplayGuard` (production's is the database's, tested in tests/reports/test_token_replay.py)."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], float] = {}

    async def first_use(self, iss: str, token_id: str, expires_at: float, now: float) -> bool:
        if (iss, token_id) in self.seen:
            return False
        self.seen[(iss, token_id)] = expires_at
        return True


async def check(token: str, get_key: KeyBook | None = None, **kwargs: Any) -> ServiceAuth:
    options: dict[str, Any] = {"audiences": AUDIENCES, "lxm": CREATE_REPORT, "now": NOW}
    options.update(kwargs)
    return await verify_service_jwt(token, get_key=get_key or KeyBook(), **options)


def mint(**overrides: Any) -> str:
    options: dict[str, Any] = {"iss": ISS, "aud": LABELER, "now": NOW}
    options.update(overrides)
    key = options.pop("key", K256)
    return mint_jwt(key, **options)


def _replace_payload(payload: str) -> str:
    head, _, sig = mint().split(".")
    return f"{head}.{payload}.{sig}"


# (id, token factory, the exact error class the verifier must raise)
BAD_TOKENS: list[tuple[str, Callable[[], str], type[AuthRequired]]] = [
    ("expired", lambda: mint(iat=NOW - 120, exp=NOW - 6), JwtExpired),
    ("iat-in-future", lambda: mint(iat=NOW + 60, exp=NOW + 120), BadJwt),
    ("nbf-in-future", lambda: mint(payload_extra={"nbf": NOW + 60}), BadJwt),
    ("wrong-aud", lambda: mint(aud="did:plc:someoneelsesomeoneelseab"), BadJwtAudience),
    ("aud-other-service-fragment", lambda: mint(aud=f"{LABELER}#atproto_pds"), BadJwtAudience),
    ("aud-array", lambda: mint(aud=[LABELER]), BadJwt),
    ("wrong-lxm", lambda: mint(lxm="com.atproto.repo.createRecord"), BadJwtLexiconMethod),
    ("missing-lxm", lambda: mint(lxm=OMIT), BadJwtLexiconMethod),
    ("lxm-not-string", lambda: mint(lxm=["com.atproto.moderation.createReport"]), BadJwt),
    ("missing-exp", lambda: mint(exp=OMIT), BadJwt),
    ("exp-string", lambda: mint(exp=str(NOW + 60)), BadJwt),
    ("exp-bool", lambda: mint(exp=True), BadJwt),
    (
        "exp-infinite",
        lambda: _replace_payload(b64url(f'{{"iss":"{ISS}","aud":"{LABELER}","exp":1e400}}'.encode())),
        BadJwt,
    ),
    ("other-signer", lambda: mint(key=OTHER, alg="ES256K"), BadJwtSignature),
    ("signature-of-other-token", lambda: mint()[:-86] + mint(lxm="x.y.z").rsplit(".", 1)[1], BadJwtSignature),
    ("alg-mismatch-es256-on-k256", lambda: mint(alg="ES256"), BadJwtSignature),
    ("alg-mismatch-es256k-on-p256", lambda: mint(key=P256, iss=P256_ISS, alg="ES256K"), BadJwtSignature),
    ("alg-none", lambda: mint(alg="none", signature=b""), BadJwt),
    ("alg-hs256", lambda: mint(alg="HS256"), BadJwt),
    ("alg-missing", lambda: mint(alg=OMIT), BadJwt),
    ("typ-at+jwt", lambda: mint(typ="at+jwt"), BadJwt),
    ("typ-refresh+jwt", lambda: mint(typ="refresh+jwt"), BadJwt),
    ("typ-dpop+jwt", lambda: mint(typ="dpop+jwt"), BadJwt),
    ("typ-uppercase-AT+JWT", lambda: mint(typ="AT+JWT"), BadJwt),
    ("crit-header", lambda: mint(header_extra={"crit": ["exp"]}), BadJwt),
    ("kid-other-key", lambda: mint(header_extra={"kid": "#atproto_label"}), BadJwt),
    ("der-signature", lambda: mint(der=True), BadJwtSignature),
    ("truncated-signature", lambda: mint(signature=K256.sign(b"x")[:63]), BadJwtSignature),
    ("garbage", lambda: "garbage", BadJwt),
    ("two-parts", lambda: ".".join(mint().split(".")[:2]), BadJwt),
    ("four-parts", lambda: mint() + ".AAAA", BadJwt),
    ("bad-base64", lambda: _replace_payload("not*base64!"), BadJwt),
    ("padded-base64", lambda: _replace_payload(json_segment({"iss": ISS}) + "=="), BadJwt),
    ("impossible-base64-length", lambda: _replace_payload("AAAAA"), BadJwt),
    ("non-json-payload", lambda: _replace_payload(b64url(b"{not json")), BadJwt),
    ("payload-json-array", lambda: _replace_payload(json_segment([ISS, LABELER])), BadJwt),
    ("payload-not-utf8", lambda: _replace_payload(b64url(b'{"iss":"\xff"}')), BadJwt),
    ("payload-NaN", lambda: _replace_payload(b64url(b'{"exp":NaN}')), BadJwt),
    (
        "duplicate-claim",
        lambda: _replace_payload(b64url(f'{{"iss":"{ISS}","aud":"x","aud":"{LABELER}"}}'.encode())),
        BadJwt,
    ),
    ("iss-not-a-did", lambda: mint(iss="alice.bsky.social"), BadJwtIss),
    ("iss-missing", lambda: mint(payload_extra={"iss": OMIT}), BadJwtIss),
    ("iss-did-fragment", lambda: mint(iss=f"{ISS}#atproto"), BadJwtIss),
    ("iss-unknown-did", lambda: mint(iss="did:plc:nobodynobodynobodynobody"), BadJwtIss),
    ("jti-not-string", lambda: mint(jti=12345), BadJwt),
    ("oversized", lambda: mint(payload_extra={"pad": "x" * MAX_TOKEN_LENGTH}), BadJwt),
]


@pytest.mark.parametrize(("make_token", "error"), [c[1:] for c in BAD_TOKENS], ids=[c[0] for c in BAD_TOKENS])
async def test_bad_token_is_rejected_with_the_right_error(
    make_token: Callable[[], str], error: type[AuthRequired]
) -> None:
    with pytest.raises(AuthRequired) as excinfo:
        await check(make_token())
    assert excinfo.type is error, excinfo.value
    assert excinfo.value.status == 401
    assert excinfo.value.message


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "authorization required"),
        ("", "authorization required"),
        ("   ", "authorization required"),
        ("Basic dXNlcjpwYXNz", "Bearer"),
        ("DPoP abc.def.ghi", "Bearer"),
        ("Bearer", "empty"),
        ("Bearer    ", "empty"),
        ("Bearertoken", "Bearer"),
    ],
)
def test_missing_or_non_bearer_authorization_is_auth_required(authorization: str | None, message: str) -> None:
    with pytest.raises(AuthRequired) as excinfo:
        bearer_token(authorization)
    assert excinfo.type is AuthRequired
    assert message in excinfo.value.message


def test_bearer_token_extracts_the_token_case_insensitively() -> None:
    token = mint()
    assert bearer_token(f"Bearer {token}") == token
    assert bearer_token(f"bearer {token}  ") == token


def test_parse_jwt_returns_the_decoded_parts() -> None:
    token = mint(jti="abc")
    parsed = parse_jwt(token)
    assert parsed.header == {"typ": "JWT", "alg": "ES256K"}
    assert parsed.payload["jti"] == "abc"
    assert parsed.signing_input == token.rsplit(".", 1)[0].encode()
    assert len(parsed.signature) == 64


@pytest.mark.parametrize("aud", [LABELER, f"{LABELER}#atproto_labeler"], ids=["bare-did", "did#atproto_labeler"])
@pytest.mark.parametrize(("key", "iss"), [(K256, ISS), (P256, P256_ISS)], ids=["k256", "p256"])
async def test_good_token_is_accepted(key: SigningKey, iss: str, aud: str) -> None:
    book = KeyBook()
    auth = await check(mint(key=key, iss=iss, aud=aud, jti="nonce-1"), book)
    assert auth == ServiceAuth(iss=iss, aud=aud, lxm=CREATE_REPORT, exp=NOW + 60, iat=NOW, jti="nonce-1")
    assert book.calls == [(iss, False)]  # no forced refresh on the happy path


@pytest.mark.parametrize(("key", "iss"), [(K256, ISS), (P256, P256_ISS)], ids=["k256", "p256"])
async def test_high_s_signature_is_accepted_like_the_reference(key: SigningKey, iss: str) -> None:
    low = key.sign(b"probe")
    assert int.from_bytes(low[32:], "big") <= key.curve.order // 2
    token = mint(key=key, iss=iss, high_s=True)
    assert int.from_bytes(parse_jwt(token).signature[32:], "big") > key.curve.order // 2
    book = KeyBook()
    assert (await check(token, book)).iss == iss
    assert book.calls == [(iss, False)]


async def test_clock_leeway_is_applied_to_exp_and_iat() -> None:
    await check(mint(iat=NOW - 100, exp=NOW - 5))  # expired 5 s ago: within the default 5 s leeway
    await check(mint(iat=NOW + 5, exp=NOW + 65))  # issued 5 s in the future: within leeway
    with pytest.raises(JwtExpired):
        await check(mint(iat=NOW - 100, exp=NOW - 5), leeway=0)
    with pytest.raises(BadJwt):
        await check(mint(iat=NOW + 5, exp=NOW + 65), leeway=0)


async def test_accepted_optional_header_and_claim_forms() -> None:
    await check(mint(typ=OMIT))
    await check(mint(header_extra={"kid": "#atproto"}))
    await check(mint(header_extra={"kid": f"{ISS}#atproto"}))
    await check(mint(iat=OMIT, exp=NOW + 60, jti=OMIT))  # neither iat nor jti is required
    await check(mint(exp=NOW + 60.5))


async def test_bad_signature_forces_exactly_one_refresh() -> None:
    book = KeyBook()
    with pytest.raises(BadJwtSignature):
        await check(mint(key=OTHER), book)
    assert book.calls == [(ISS, False), (ISS, True)]


async def test_refreshed_key_is_used_when_the_cached_one_fails() -> None:
    rotated = SigningKey.generate(Curve.P256)  # rotation may change the curve too

    class Rotating(KeyBook):
        async def __call__(self, iss: str, force_refresh: bool) -> str | None:
            self.calls.append((iss, force_refresh))
            return rotated.did_key if force_refresh else K256.did_key

    book = Rotating()
    auth = await check(mint(key=rotated), book)
    assert auth.iss == ISS
    assert book.calls == [(ISS, False), (ISS, True)]


async def test_malformed_tokens_are_rejected_before_any_key_lookup() -> None:
    book = KeyBook()
    for make_token in (lambda: "garbage", lambda: mint(typ="at+jwt"), lambda: mint(iat=NOW - 120, exp=NOW - 60)):
        with pytest.raises(AuthRequired):
            await check(make_token(), book)
    assert book.calls == []


async def test_replayed_jti_is_rejected() -> None:
    replay = SeenTokens()
    token = mint(jti="once")
    await check(token, replay=replay)
    with pytest.raises(BadJwt, match="replayed") as excinfo:
        await check(token, replay=replay)
    assert excinfo.type is BadJwt
    # A fresh token that reuses the jti is a replay too; the same jti from another issuer is not.
    with pytest.raises(BadJwt, match="replayed"):
        await check(mint(jti="once", aud=f"{LABELER}#atproto_labeler"), replay=replay)
    await check(mint(key=P256, iss=P256_ISS, jti="once"), replay=replay)
    assert replay.seen[(ISS, "jti:once")] == NOW + 60 + 5, "remembered until exp plus the leeway"


async def test_a_token_without_jti_is_single_use_too() -> None:
    """Issue #15.10: a token without `jti` was never replay-checked. It is identified by its signed content: the
    same token again, or its high-S twin (the other valid signature of the same content), is a replay; another
    token without jti is not."""
    replay = SeenTokens()
    token = mint(jti=OMIT)
    await check(token, replay=replay)
    with pytest.raises(BadJwt, match="replayed"):
        await check(token, replay=replay)
    twin = mint(jti=OMIT, high_s=True)  # same content, the other valid signature
    assert twin.rsplit(".", 1)[0] == token.rsplit(".", 1)[0] and twin != token
    with pytest.raises(BadJwt, match="replayed"):
        await check(twin, replay=replay)
    await check(mint(jti=OMIT, iat=NOW - 1, exp=NOW + 59), replay=replay)
    assert all(token_id.startswith("sha256:") for _, token_id in replay.seen) and len(replay.seen) == 2


async def test_a_forged_token_does_not_burn_its_jti() -> None:
    replay = SeenTokens()
    with pytest.raises(BadJwtSignature):
        await check(mint(key=OTHER, jti="victim"), replay=replay)
    await check(mint(jti="victim"), replay=replay)


@pytest.mark.parametrize(
    ("exp", "accepted"),
    [
        (NOW + 60, True),  # what a PDS gives a proxied call
        (NOW + 3600, True),  # the most getServiceAuth grants
        (NOW + 3600 + 60, True),  # ... with a minute of the issuer's clock running ahead
        (NOW + 3600 + 61, False),
        (NOW + 10 * 365 * 86400, False),  # issue #15.10: ten years ahead used to be accepted
    ],
)
async def test_a_token_may_not_expire_more_than_an_hour_ahead(exp: int, accepted: bool) -> None:
    token = mint(iat=NOW, exp=exp)
    if accepted:
        assert (await check(token)).exp == exp
    else:
        with pytest.raises(BadJwt, match="too far ahead"):
            await check(token)


async def test_the_maximum_lifetime_is_configurable() -> None:
    await check(mint(iat=NOW, exp=NOW + 60), max_lifetime=60)
    with pytest.raises(BadJwt, match="at most 60 s"):
        await check(mint(iat=NOW, exp=NOW + 300), max_lifetime=60)


async def test_audiences_must_be_a_collection() -> None:
    with pytest.raises(TypeError):
        await verify_service_jwt(mint(), audiences=LABELER, lxm=CREATE_REPORT, get_key=KeyBook(), now=NOW)


async def test_resigned_token_with_tampered_claims_is_still_checked() -> None:
    # A validly signed token is only as good as its claims: re-signing a tampered lxm still fails the lxm check.
    head, _, _ = mint().split(".")
    tampered = f"{head}.{json_segment({'iss': ISS, 'aud': LABELER, 'exp': NOW + 60, 'lxm': 'x.y.z'})}.AAAA"
    with pytest.raises(BadJwtLexiconMethod):
        await check(resign(K256, tampered))


# --- tokens minted by Bluesky's reference implementation ----------------------------------------------


def _reference_cases() -> list[dict[str, Any]]:
    return json.loads(VECTORS.read_text())["cases"]


@pytest.mark.parametrize("case", _reference_cases(), ids=lambda c: c["note"])
async def test_token_minted_by_atproto_xrpc_server_is_accepted(case: dict[str, Any]) -> None:
    key = SigningKey(Curve(case["curve"]), bytes.fromhex(case["secret"]))
    assert key.did_key == case["did_key"]  # our key encoding agrees with @atproto/crypto
    book = KeyBook(keys={case["iss"]: case["did_key"]})
    auth = await verify_service_jwt(
        case["jwt"], audiences=AUDIENCES, lxm=CREATE_REPORT, get_key=book, now=case["now"], replay=SeenTokens()
    )
    assert (auth.iss, auth.aud, auth.exp) == (case["iss"], case["aud"], case["now"] + 60)
    assert auth.jti is not None and len(auth.jti) == 32
    with pytest.raises(BadJwtLexiconMethod):
        await verify_service_jwt(
            case["jwt"], audiences=AUDIENCES, lxm="com.atproto.repo.createRecord", get_key=book, now=case["now"]
        )
    with pytest.raises(JwtExpired):
        await verify_service_jwt(
            case["jwt"], audiences=AUDIENCES, lxm=CREATE_REPORT, get_key=book, now=case["now"] + 120
        )


# --- through a real resolver and a fake PLC over HTTP --------------------------------------------------


@pytest.fixture(scope="module")
def plc() -> Iterator[tuple[FakePlc, RunningServer]]:
    with running_fake_plc() as running:
        yield running


@pytest.fixture
async def resolver(plc: tuple[FakePlc, RunningServer]) -> AsyncIterator[DidResolver]:
    async with DidResolver(plc_url=plc[1].url, refresh_cooldown=0) as resolver:
        yield resolver


@pytest.mark.parametrize("legacy", [False, True], ids=["multikey", "legacy-2019"])
@pytest.mark.parametrize("curve", list(Curve))
async def test_issuer_resolved_from_the_plc(
    plc: tuple[FakePlc, RunningServer], resolver: DidResolver, curve: Curve, legacy: bool
) -> None:
    fake, _ = plc
    key, did = SigningKey.generate(curve), new_plc_did()
    fake.put(did, did_document(did, atproto=key, legacy=legacy))
    auth = await check(mint(key=key, iss=did), resolver.service_auth_key)
    assert auth.iss == did
    assert fake.hits[did] == 1


async def test_key_rotated_at_the_plc_is_accepted_after_one_forced_refresh(
    plc: tuple[FakePlc, RunningServer], resolver: DidResolver
) -> None:
    fake, _ = plc
    old, new, did = SigningKey.generate(), SigningKey.generate(), new_plc_did()
    fake.put(did, did_document(did, atproto=old))
    await check(mint(key=old, iss=did), resolver.service_auth_key)
    assert fake.hits[did] == 1

    fake.put(did, did_document(did, atproto=new))
    await check(mint(key=new, iss=did), resolver.service_auth_key)
    assert fake.hits[did] == 2  # the cached old key failed, one forced refresh found the new one
    await check(mint(key=new, iss=did), resolver.service_auth_key)
    assert fake.hits[did] == 2  # and the refreshed document is cached

    with pytest.raises(BadJwtSignature):
        await check(mint(key=old, iss=did), resolver.service_auth_key)
    assert fake.hits[did] == 3  # a token from the retired key costs exactly one more fetch


async def test_unknown_issuer_at_the_plc_is_bad_iss(plc: tuple[FakePlc, RunningServer], resolver: DidResolver) -> None:
    did = new_plc_did()
    with pytest.raises(BadJwtIss):
        await check(mint(iss=did), resolver.service_auth_key)


async def test_issuer_without_an_atproto_key_is_bad_iss(
    plc: tuple[FakePlc, RunningServer], resolver: DidResolver
) -> None:
    fake, _ = plc
    did = new_plc_did()
    fake.put(did, did_document(did, label=K256))  # only #atproto_label: never used for service auth
    with pytest.raises(BadJwtIss):
        await check(mint(iss=did), resolver.service_auth_key)


async def test_forced_refresh_cooldown_limits_fetches_for_a_flood_of_forgeries(
    plc: tuple[FakePlc, RunningServer],
) -> None:
    fake, server = plc
    did = new_plc_did()
    fake.put(did, did_document(did, atproto=K256))
    async with DidResolver(plc_url=server.url, refresh_cooldown=60) as resolver:
        for _ in range(5):
            with pytest.raises(BadJwtSignature):
                await check(mint(key=OTHER, iss=did), resolver.service_auth_key)
    assert fake.hits[did] == 1


def test_signing_helpers_agree() -> None:
    token = sign_parts(K256, {"alg": "ES256K"}, {"iss": ISS})
    sig = parse_jwt(token).signature
    assert to_high_s(K256, to_high_s(K256, sig)) == sig
