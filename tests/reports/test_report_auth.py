"""createReport over real HTTP: which service tokens are accepted, and each bad token's 401 (never a 5xx).

Issuers live in a fake PLC directory served over HTTP; the labeler resolves them there like plc.directory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from report_helpers import LABELER_DID, Identity, People, create_report, register, report_body
from support.fake_plc import did_document, new_plc_did
from support.jwt_minter import OMIT, b64url, mint_jwt

from labeler.protocol.crypto import Curve, SigningKey

OTHER_KEY = SigningKey.generate(Curve.K256)


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _unregistered(people: People) -> dict[str, str]:
    return _bearer(mint_jwt(OTHER_KEY, iss=new_plc_did(), aud=LABELER_DID, now=time.time()))


def _without_atproto_key(people: People) -> dict[str, str]:
    did = new_plc_did()
    people.plc.put(did, did_document(did, label=OTHER_KEY, pds=None))
    return _bearer(mint_jwt(OTHER_KEY, iss=did, aud=LABELER_DID, now=time.time()))


def _plc_outage(people: People) -> dict[str, str]:
    identity = register(people.plc)
    people.plc.raw[identity.did] = (500, b"upstream down")
    return identity.headers()


def _tombstoned(people: People) -> dict[str, str]:
    identity = register(people.plc)
    people.plc.tombstoned.add(identity.did)
    return identity.headers()


# name → (headers for the request, the error expected). Each builds a fresh token at request time.
BAD_TOKENS: dict[str, tuple[Callable[[People], dict[str, str]], str]] = {
    "missing header": (lambda p: {}, "AuthRequired"),
    "basic scheme": (lambda p: {"authorization": "Basic YWRtaW46eA=="}, "AuthRequired"),
    "empty bearer": (lambda p: {"authorization": "Bearer"}, "AuthRequired"),
    "garbage": (lambda p: _bearer("not-a-jwt"), "BadJwt"),
    "two parts": (lambda p: _bearer("eyJhbGciOiJFUzI1NksifQ.e30"), "BadJwt"),
    "not base64": (lambda p: _bearer("a!.b.c"), "BadJwt"),
    "too large": (lambda p: _bearer("a" * 9000 + ".b.c"), "BadJwt"),
    "expired": (lambda p: p.alice.headers(iat=int(time.time()) - 600, exp=int(time.time()) - 60), "JwtExpired"),
    "iat in the future": (lambda p: p.alice.headers(iat=int(time.time()) + 600), "BadJwt"),
    "missing exp": (lambda p: p.alice.headers(exp=OMIT), "BadJwt"),
    "exp a string": (lambda p: p.alice.headers(exp=str(int(time.time()) + 60)), "BadJwt"),
    "wrong aud": (lambda p: p.alice.headers(aud="did:plc:someotherlabelerservice"), "BadJwtAudience"),
    "aud other fragment": (lambda p: p.alice.headers(aud=f"{LABELER_DID}#atproto_pds"), "BadJwtAudience"),
    "wrong lxm": (lambda p: p.alice.headers(lxm="tools.ozone.moderation.emitEvent"), "BadJwtLexiconMethod"),
    "missing lxm": (lambda p: p.alice.headers(lxm=OMIT), "BadJwtLexiconMethod"),
    "other signer": (
        lambda p: _bearer(mint_jwt(OTHER_KEY, iss=p.alice.did, aud=LABELER_DID, now=time.time())),
        "BadJwtSignature",
    ),
    "alg mismatch ES256 on k256": (lambda p: p.alice.headers(alg="ES256"), "BadJwtSignature"),
    "alg none": (lambda p: p.alice.headers(alg="none"), "BadJwt"),
    "alg HS256": (lambda p: p.alice.headers(alg="HS256"), "BadJwt"),
    "typ at+jwt": (lambda p: p.alice.headers(typ="at+jwt"), "BadJwt"),
    "typ refresh+jwt": (lambda p: p.alice.headers(typ="refresh+jwt"), "BadJwt"),
    "typ dpop+jwt": (lambda p: p.alice.headers(typ="dpop+jwt"), "BadJwt"),
    "kid names another key": (lambda p: p.alice.headers(header_extra={"kid": "#atproto_label"}), "BadJwt"),
    "crit header": (lambda p: p.alice.headers(header_extra={"crit": ["exp"]}), "BadJwt"),
    "DER signature": (lambda p: p.alice.headers(der=True), "BadJwtSignature"),
    "empty signature": (lambda p: _bearer(p.alice.token().rsplit(".", 1)[0] + "."), "BadJwtSignature"),
    "iss not a DID": (
        lambda p: _bearer(mint_jwt(OTHER_KEY, iss="alice.test", aud=LABELER_DID, now=time.time())),
        "BadJwtIss",
    ),
    "iss with fragment": (lambda p: p.alice.headers(payload_extra={"iss": p.alice.did + "#atproto"}), "BadJwtIss"),
    "iss unknown to PLC": (_unregistered, "BadJwtIss"),
    "iss tombstoned": (_tombstoned, "BadJwtIss"),
    "iss without #atproto key": (_without_atproto_key, "BadJwtIss"),
    "iss did:web localhost (not allowed)": (
        lambda p: _bearer(mint_jwt(OTHER_KEY, iss="did:web:localhost%3A1", aud=LABELER_DID, now=time.time())),
        "BadJwtIss",
    ),
    "PLC outage for iss": (_plc_outage, "BadJwtIss"),
    "iss did:web whose host resolves to loopback": (
        lambda p: _bearer(mint_jwt(OTHER_KEY, iss="did:web:0x7f000001", aud=LABELER_DID, now=time.time())),
        "BadJwtIss",
    ),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_bad_token_rejected(server: Any, people: People, case: str) -> None:
    make_headers, expected = BAD_TOKENS[case]
    response = await create_report(server.url, report_body(people.bob.account), make_headers(people))
    assert response.status_code == 401, response.text
    assert response.json()["error"] == expected, response.json()
    assert response.json()["message"]
    assert await server.labeler.reports.store.list_reports(status=None) == []


async def test_plc_outage_is_not_called_a_bad_signature(server: Any, people: People) -> None:
    response = await create_report(server.url, report_body(people.bob.account), _plc_outage(people))
    assert response.json()["error"] == "BadJwtIss"
    assert "retry" in response.json()["message"] and "HTTP 500" in response.json()["message"]


async def test_an_issuer_we_refuse_to_resolve_is_logged_below_warning(
    server: Any, people: People, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone can send a token naming `did:web:0x7f000001`: the refusal is a 401 and an INFO line, not a warning."""
    token = mint_jwt(OTHER_KEY, iss="did:web:0x7f000001", aud=LABELER_DID, now=time.time())
    with caplog.at_level(logging.INFO):
        response = await create_report(server.url, report_body(people.bob.account), _bearer(token))
    assert response.status_code == 401 and "cannot be used here" in response.json()["message"]
    refusals = [r for r in caplog.records if "refused the token issuer" in r.getMessage()]
    assert [r.levelno for r in refusals] == [logging.INFO]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("labeler")]


async def test_replayed_jti_rejected(server: Any, people: People) -> None:
    headers = people.alice.headers()
    first = await create_report(server.url, report_body(people.bob.account), headers)
    assert first.status_code == 200, first.text
    again = await create_report(server.url, report_body(people.bob.account), headers)
    assert again.status_code == 401 and again.json()["error"] == "BadJwt"
    assert "replayed" in again.json()["message"]
    assert len(await server.labeler.reports.store.list_reports(status=None)) == 1


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("bare DID aud (what PDSes send)", {}),
        ("did#atproto_labeler aud", {"aud": f"{LABELER_DID}#atproto_labeler"}),
        ("high-S signature (accepted, as the reference verifiers do)", {"high_s": True}),
        ("kid #atproto", {"header_extra": {"kid": "#atproto"}}),
        ("no jti", {"jti": OMIT}),
        ("no typ", {"typ": OMIT}),
    ],
)
async def test_accepted_tokens(server: Any, people: People, name: str, overrides: dict[str, Any]) -> None:
    response = await create_report(server.url, report_body(people.bob.account), people.alice.headers(**overrides))
    assert response.status_code == 200, (name, response.text)
    assert response.json()["reportedBy"] == people.alice.did


@pytest.mark.parametrize("who", ["bob", "carol"], ids=["p256 ES256", "legacy PLC document form"])
async def test_other_key_types_and_document_forms(server: Any, people: People, who: str) -> None:
    reporter: Identity = getattr(people, who)
    response = await create_report(server.url, report_body(people.alice.account), reporter.headers())
    assert response.status_code == 200, response.text
    assert response.json()["reportedBy"] == reporter.did


async def test_rotated_key_is_picked_up(server: Any, people: People) -> None:
    """A cached document with an old key: the failed signature triggers one forced re-resolution."""
    identity = register(people.plc)
    assert (await create_report(server.url, report_body(people.bob.account), identity.headers())).status_code == 200
    new_key = SigningKey.generate(Curve.K256)
    people.plc.put(identity.did, did_document(identity.did, atproto=new_key, pds=None))
    await asyncio.sleep(1.1)  # past the resolver's refresh cooldown
    rotated = Identity(identity.did, new_key)
    response = await create_report(server.url, report_body(people.bob.account), rotated.headers())
    assert response.status_code == 200, response.text


async def test_bad_token_with_bad_body_is_still_401(server: Any) -> None:
    """Authentication comes first: an anonymous caller learns nothing about body validation."""
    response = await create_report(server.url, b"not json", {"authorization": "Bearer " + b64url(b"x")})
    assert response.status_code == 401
