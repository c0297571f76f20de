"""DID resolution (labeler.identity) against the fake PLC over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpcore
import pytest
from atproto_identity.cache.in_memory_cache import AsyncDidInMemoryCache
from atproto_identity.did.resolver import AsyncDidResolver
from support.fake_plc import FakePlc, did_document, new_plc_did, running_fake_plc, verification_method
from support.server import RunningServer

from labeler.identity import (
    BoundedDidCache,
    DidNotFound,
    DidRefused,
    DidResolver,
    ResolutionError,
    parse_document,
    verification_key,
)
from labeler.protocol.crypto import Curve, SigningKey

PDS = "https://pds.example.com"
LABELER_URL = "https://labeler.example.com"


@pytest.fixture(scope="module")
def plc_server() -> Iterator[tuple[FakePlc, RunningServer]]:
    with running_fake_plc() as running:
        yield running


@pytest.fixture
def fake(plc_server: tuple[FakePlc, RunningServer]) -> FakePlc:
    return plc_server[0]


@pytest.fixture
def server(plc_server: tuple[FakePlc, RunningServer]) -> RunningServer:
    return plc_server[1]


@pytest.fixture
async def resolver(server: RunningServer) -> AsyncIterator[DidResolver]:
    async with DidResolver(plc_url=server.url, refresh_cooldown=0) as resolver:
        yield resolver


class Clock:
    """A settable wall clock shared by a cache and a resolver."""

    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


# --- keys and endpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["multikey", "legacy-2019-uncompressed"])
@pytest.mark.parametrize("curve", list(Curve))
async def test_keys_and_endpoints_from_a_plc_document(
    fake: FakePlc, resolver: DidResolver, curve: Curve, legacy: bool
) -> None:
    account, label, did = SigningKey.generate(curve), SigningKey.generate(curve), new_plc_did()
    fake.put(did, did_document(did, atproto=account, label=label, labeler=LABELER_URL, legacy=legacy))
    if legacy:
        method = fake.documents[did]["verificationMethod"][0]
        assert method["type"].startswith("EcdsaSecp256")
        assert len(method["publicKeyMultibase"]) > len(account.multikey)  # the uncompressed point
    assert await resolver.atproto_key(did) == account.did_key
    assert await resolver.label_key(did) == label.did_key
    assert await resolver.pds_endpoint(did) == PDS
    assert await resolver.labeler_endpoint(did) == LABELER_URL
    document = await resolver.resolve(did)
    assert document is not None and document.id == did
    assert fake.hits[did] == 1  # five questions, one fetch


@pytest.mark.parametrize("relative", [False, True], ids=["absolute-id", "relative-id"])
async def test_label_key_matches_relative_and_absolute_ids(
    fake: FakePlc, resolver: DidResolver, relative: bool
) -> None:
    label, did = SigningKey.generate(), new_plc_did()
    fake.put(did, did_document(did, label=label, relative_ids=relative))
    assert await resolver.label_key(did) == label.did_key


async def test_label_key_never_falls_back_to_another_key(fake: FakePlc, resolver: DidResolver) -> None:
    account, other, did = SigningKey.generate(), SigningKey.generate(), new_plc_did()
    document = did_document(did, atproto=account)
    document["verificationMethod"] += [
        verification_method(did, "atproto_label_old", other),
        verification_method("did:plc:someoneelsesomeoneelseab", "atproto_label", other),
        {**verification_method(did, "atproto_labelx", other)},
    ]
    fake.put(did, document)
    assert await resolver.atproto_key(did) == account.did_key
    assert await resolver.label_key(did) is None
    assert await resolver.labeler_endpoint(did) is None


def test_unusable_keys_count_as_absent() -> None:
    did, key = new_plc_did(), SigningKey.generate()
    cases = {
        "no multibase": {"id": "#atproto_label", "type": "Multikey", "controller": did},
        "unknown type": {**verification_method(did, "atproto_label", key), "type": "JsonWebKey2020"},
        "garbage multibase": {**verification_method(did, "atproto_label", key), "publicKeyMultibase": "zzz"},
        # ed25519 multikey (codec 0xed): a valid did:key, but not a curve atproto allows
        "ed25519": {
            **verification_method(did, "atproto_label", key),
            "publicKeyMultibase": "z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
        },
    }
    for name, method in cases.items():
        document = parse_document(did, json.dumps({"id": did, "verificationMethod": [method]}).encode())
        assert verification_key(document, "atproto_label") is None, name


# --- not found, bad input, bad documents --------------------------------------------------------------


async def test_unknown_did_is_not_found_not_key_error(fake: FakePlc, resolver: DidResolver) -> None:
    did = new_plc_did()
    for _ in range(2):  # the second miss goes through the cache's delete path again
        assert await resolver.resolve(did) is None
        with pytest.raises(DidNotFound):
            await resolver.atproto_key(did)
        with pytest.raises(DidNotFound):
            await resolver.label_key(did, force_refresh=True)
    assert await resolver.service_auth_key(did, False) is None


async def test_tombstoned_did_is_not_found_and_leaves_the_cache(fake: FakePlc, resolver: DidResolver) -> None:
    did = new_plc_did()
    fake.put(did, did_document(did, atproto=SigningKey.generate()))
    assert await resolver.resolve(did) is not None
    fake.tombstoned.add(did)
    with pytest.raises(DidNotFound):
        await resolver.atproto_key(did, force_refresh=True)
    assert did not in resolver.cache  # type: ignore[operator]


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ((500, b"oops"), "HTTP 500"),
        ((302, b""), "HTTP 302"),
        ((200, b"{not json"), "not JSON"),
        ((200, b"[1, 2]"), "not a JSON object"),
        ((200, b'{"id": 5}'), "malformed"),
        ((200, b'{"id": "DID", "verificationMethod": {"id": "#atproto"}}'), "malformed"),
        ((200, b'{"id": "did:plc:someoneelsesomeoneelseab"}'), "another DID"),
        ((200, b'{"id": "DID", "pad": "' + b"x" * 70_000 + b'"}'), "too large"),
    ],
    ids=["500", "redirect", "not-json", "json-array", "bad-id", "bad-methods", "other-did", "oversized"],
)
async def test_bad_directory_answers_are_resolution_errors(
    fake: FakePlc, resolver: DidResolver, raw: tuple[int, bytes], why: str
) -> None:
    did = new_plc_did()
    fake.raw[did] = (raw[0], raw[1].replace(b"DID", did.encode()))
    with pytest.raises(ResolutionError, match=why):
        await resolver.resolve(did)


@pytest.mark.parametrize(
    "did",
    [
        "not-a-did",
        "did:plc:short",
        "did:plc:UPPERCASEUPPERCASEUPPERCA",
        "did:plc:../../../../etc/passwdxxxxxx",
        "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",
        "did:example:123",
        "did:web:example.com:user:alice",
        "did:web:example.com%2Fpath",
        "did:web:127.0.0.1",
        "did:web:localhost",
        "did:web:example.com%3A8443",
        "did:web:-bad-.example",
    ],
)
async def test_unsupported_or_malformed_dids_are_refused_without_a_fetch(
    fake: FakePlc, resolver: DidResolver, did: str
) -> None:
    before = sum(fake.hits.values())
    with pytest.raises(ResolutionError):
        await resolver.resolve(did)
    assert sum(fake.hits.values()) == before


async def test_transport_failure_is_a_resolution_error() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with DidResolver(plc_url=f"http://127.0.0.1:{port}", timeout=2) as resolver:
        with pytest.raises(ResolutionError, match="ConnectError") as excinfo:
            await resolver.resolve(new_plc_did())
    assert excinfo.value.__cause__ is not None


# --- caching -----------------------------------------------------------------------------------------


async def test_cache_and_forced_refresh(fake: FakePlc, resolver: DidResolver) -> None:
    old, new, did = SigningKey.generate(), SigningKey.generate(Curve.P256), new_plc_did()
    fake.put(did, did_document(did, atproto=old))
    assert await resolver.atproto_key(did) == old.did_key
    fake.put(did, did_document(did, atproto=new))
    assert await resolver.atproto_key(did) == old.did_key  # served from the cache
    assert fake.hits[did] == 1
    assert await resolver.atproto_key(did, force_refresh=True) == new.did_key
    assert fake.hits[did] == 2
    assert await resolver.atproto_key(did) == new.did_key
    assert fake.hits[did] == 2


async def test_forced_refresh_within_the_cooldown_reuses_the_last_fetch(fake: FakePlc, server: RunningServer) -> None:
    clock, did = Clock(), new_plc_did()
    fake.put(did, did_document(did, atproto=SigningKey.generate()))
    cache = BoundedDidCache(clock=clock)
    async with DidResolver(plc_url=server.url, cache=cache, clock=clock, refresh_cooldown=5) as resolver:
        await resolver.resolve(did)
        clock.now += 4
        await resolver.resolve(did, force_refresh=True)
        assert fake.hits[did] == 1
        clock.now += 2
        await resolver.resolve(did, force_refresh=True)
        assert fake.hits[did] == 2


async def test_stale_entries_are_refetched_and_served_stale_when_the_directory_fails(
    fake: FakePlc, server: RunningServer
) -> None:
    clock, did = Clock(), new_plc_did()
    first, second = SigningKey.generate(), SigningKey.generate()
    fake.put(did, did_document(did, atproto=first))
    cache = BoundedDidCache(stale_ttl=60, max_ttl=600, clock=clock)
    async with DidResolver(plc_url=server.url, cache=cache, clock=clock) as resolver:
        assert await resolver.atproto_key(did) == first.did_key
        fake.put(did, did_document(did, atproto=second))
        clock.now += 61  # stale: the next hit re-fetches
        assert await resolver.atproto_key(did) == second.did_key
        assert fake.hits[did] == 2
        fake.raw[did] = (503, b"")
        clock.now += 61  # stale again, and the directory is down: the stale document still answers
        assert await resolver.atproto_key(did) == second.did_key
        assert fake.hits[did] == 3
        clock.now += 600  # past max_ttl: no longer served
        with pytest.raises(ResolutionError, match="HTTP 503"):
            await resolver.atproto_key(did)


async def test_concurrent_resolutions_share_one_fetch(fake: FakePlc, resolver: DidResolver) -> None:
    key, did = SigningKey.generate(), new_plc_did()
    fake.put(did, did_document(did, atproto=key))
    results = await asyncio.gather(*(resolver.atproto_key(did) for _ in range(10)))
    assert results == [key.did_key] * 10
    assert fake.hits[did] == 1


async def test_bounded_cache_evicts_least_recently_used_and_tolerates_absent_deletes() -> None:
    documents = {
        did: parse_document(did, json.dumps({"id": did}).encode()) for did in (new_plc_did() for _ in range(3))
    }
    a, b, c = documents
    cache = BoundedDidCache(max_entries=2)
    await cache.set(a, documents[a])
    await cache.set(b, documents[b])
    assert await cache.get(a) is not None  # touch a: b is now least recently used
    await cache.set(c, documents[c])
    assert (a in cache, b in cache, c in cache) == (True, False, True)
    await cache.delete(b)  # absent: no KeyError (the SDK's DidInMemoryCache raises here)
    await cache.clear()
    assert len(cache) == 0


async def test_bounded_cache_fixes_the_sdk_resolver_key_error(server: RunningServer) -> None:
    """Our cache plugs into the SDK's own resolver; the SDK's cache still crashes on an unknown DID."""
    did = new_plc_did()
    ours = AsyncDidResolver(plc_url=server.url, cache=BoundedDidCache())
    sdks = AsyncDidResolver(plc_url=server.url, cache=AsyncDidInMemoryCache())
    try:
        assert await ours.resolve(did) is None
        with pytest.raises(KeyError):  # if this starts passing, the SDK fixed its bug (sdk-notes.md §6)
            await sdks.resolve(did)
    finally:
        for resolver in (ours, sdks):
            for method in resolver._methods.values():  # the SDK offers no way to close its clients
                await method._client.aclose()  # type: ignore[union-attr]


# --- did:web -----------------------------------------------------------------------------------------


async def test_did_web_on_localhost_with_a_port_needs_the_insecure_flag(fake: FakePlc, server: RunningServer) -> None:
    did = f"did:web:localhost%3A{server.port}"
    label = SigningKey.generate(Curve.P256)
    fake.web_document = did_document(did, label=label, labeler=server.localhost_url, handle=None, pds=None)
    async with DidResolver(plc_url=server.url, allow_insecure_did_web=True) as resolver:
        assert resolver.document_url(did) == f"http://localhost:{server.port}/.well-known/did.json"
        assert await resolver.label_key(did) == label.did_key
        assert await resolver.labeler_endpoint(did) == server.localhost_url
    hits = fake.hits["/.well-known/did.json"]
    assert hits == 1
    async with DidResolver(plc_url=server.url) as strict:
        with pytest.raises(ResolutionError, match="insecure"):
            await strict.resolve(did)
    assert fake.hits["/.well-known/did.json"] == hits  # refused before any request


async def test_did_web_missing_or_mismatched_document(fake: FakePlc, server: RunningServer) -> None:
    did = f"did:web:localhost%3A{server.port}"
    async with DidResolver(plc_url=server.url, allow_insecure_did_web=True) as resolver:
        fake.web_document = None
        with pytest.raises(DidNotFound):
            await resolver.ensure_resolve(did)
        fake.web_document = did_document("did:web:elsewhere.example", atproto=SigningKey.generate())
        with pytest.raises(ResolutionError, match="another DID"):
            await resolver.resolve(did)


def _resolves_to_loopback(host: str) -> bool:
    try:
        return all(info[4][0] in ("127.0.0.1", "::1") for info in socket.getaddrinfo(host, 443))
    except OSError:
        return False


#: Issue #15.12's inputs: names that pass the hostname check but resolve to loopback. `vm` is the machine's own name
#: in /etc/hosts where the issue was found; it is tested only where it resolves to loopback too.
LOOPBACK_NAMES = ["0x7f000001", "0x7f.1", *(["vm"] if _resolves_to_loopback("vm") else [])]


@pytest.mark.parametrize("host", LOOPBACK_NAMES)
async def test_a_did_web_host_that_resolves_to_loopback_is_refused_before_connecting(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    """With the insecure did:web and private fetch flags off, `did:web:vm` and `did:web:0x7f000001` used to make
    us open TCP+TLS connections to 127.0.0.1:443. Now the name is resolved and refused (`DidRefused`, not an
    outage) before any connection is attempted."""
    attempts: list[tuple[str, int]] = []
    real_connect = httpcore.AnyIOBackend.connect_tcp

    async def connect_tcp(self: httpcore.AnyIOBackend, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        attempts.append((host, port))
        return await real_connect(self, host, port, *args, **kwargs)

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", connect_tcp)
    async with DidResolver(plc_url=server.url) as resolver:
        assert resolver.document_url(f"did:web:{host}") == f"https://{host}/.well-known/did.json"
        with pytest.raises(DidRefused, match=r"non-public 127\.0\.0\.1"):
            await resolver.resolve(f"did:web:{host}")
        assert attempts == []
        await resolver.resolve(new_plc_did())  # the PLC directory, on loopback by the operator's choice, still works
        assert attempts and all(port == server.port for _host, port in attempts)


def test_did_web_urls() -> None:
    strict = DidResolver()
    dev = DidResolver(allow_insecure_did_web=True)
    try:
        assert strict.document_url("did:web:labeler.example.com") == (
            "https://labeler.example.com/.well-known/did.json"
        )
        assert dev.document_url("did:web:labeler.example.com") == "https://labeler.example.com/.well-known/did.json"
        assert dev.document_url("did:web:localhost") == "http://localhost/.well-known/did.json"
        with pytest.raises(ResolutionError):
            dev.document_url("did:web:example.com%3A8443")  # ports only for localhost, even in dev
        assert strict.document_url("did:plc:abcdefghijklmnopqrstuvwx") == (
            "https://plc.directory/did:plc:abcdefghijklmnopqrstuvwx"
        )
    finally:
        asyncio.run(strict.aclose())
        asyncio.run(dev.aclose())
