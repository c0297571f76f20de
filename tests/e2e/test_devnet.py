"""The devnet harness works, checked with the Python atproto SDK as the peer (no labeler code involved)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import coincurve
import httpx
import libipld
import pytest
from atproto import CAR, CID, AsyncFirehoseSubscribeReposClient, firehose_models, models
from atproto import parse_subscribe_repos_message as parse_repos_message
from atproto.exceptions import BadRequestError
from atproto_crypto.did import format_did_key
from atproto_server.auth.jwt import verify_jwt

from .harness import Devnet, create_account, get_mail, id_resolver, login, plc_operation_token, post_image

pytestmark = pytest.mark.devnet

CREATE_REPORT = "com.atproto.moderation.createReport"
Stub = tuple[int, list[dict[str, Any]]]  # port of a stub labeler, and the requests it received


def _sha256_of_raw_cid(cid: str) -> bytes:
    """The digest inside a CIDv1 (base32 'b…', raw codec, sha2-256), as the PDS makes for blobs."""
    assert cid.startswith("b"), cid
    body = cid[1:].upper()
    raw = base64.b32decode(body + "=" * (-len(body) % 8))
    assert raw[:4] == bytes([0x01, 0x55, 0x12, 0x20]), raw[:4].hex()
    return raw[4:]


def test_plc_resolves_seeded_accounts(devnet: Devnet) -> None:
    with id_resolver(devnet) as resolver:
        for acct in devnet.accounts.values():
            data = resolver.did.resolve_atproto_data(acct.did)
            assert data.handle == acct.handle
            assert data.pds == devnet.pds_public_url
            # Legacy EcdsaSecp256k1VerificationKey2019 form on this PLC; the SDK still yields a did:key.
            assert data.signing_key is not None and data.signing_key.startswith("did:key:z")


def test_login_record_and_blob(devnet: Devnet) -> None:
    post = devnet.post
    with login(devnet, "alice") as client:
        assert client.me is None  # no AppView here
        record = client.com.atproto.repo.get_record(
            {"repo": post.did, "collection": "app.bsky.feed.post", "rkey": post.uri.rsplit("/", 1)[1]}
        )
        blob = client.com.atproto.sync.get_blob({"did": post.did, "cid": post.blob_cid})
    assert record.cid == post.cid
    embed = record.value["embed"] if isinstance(record.value, dict) else record.value.embed
    assert isinstance(embed, models.AppBskyEmbedImages.Main)
    assert embed.images[0].image.ref.link == post.blob_cid
    assert blob.startswith(b"\x89PNG\r\n\x1a\n")
    assert hashlib.sha256(blob).digest() == _sha256_of_raw_cid(post.blob_cid)


def test_plc_operation_token_from_mail(devnet: Devnet) -> None:
    token = plc_operation_token(devnet, "labeler")
    assert re.fullmatch(r"[A-Z2-7]{5}-[A-Z2-7]{5}", token), token
    mail = [m for m in get_mail(devnet) if m.token == token]
    assert len(mail) == 1
    assert mail[0].to == devnet.labeler.email
    assert mail[0].subject == "PLC Update Operation Requested"

    # The PDS accepts the token: it signs (but we do not submit) an operation with it.
    with login(devnet, "labeler") as client:
        signed = client.com.atproto.identity.sign_plc_operation({"token": token})
    assert signed.operation["type"] == "plc_operation"


def test_service_auth_verifies_against_plc(devnet: Devnet) -> None:
    aud = devnet.labeler.did
    with login(devnet, "alice") as client:
        token = client.com.atproto.server.get_service_auth({"aud": aud, "lxm": CREATE_REPORT}).token
    with id_resolver(devnet) as resolver:
        payload = verify_jwt(token, resolver.did.resolve_atproto_key, own_did=aud)
    assert payload.iss == devnet.alice.did
    assert payload.lxm == CREATE_REPORT


async def test_firehose_carries_image_post(devnet: Devnet) -> None:
    post = devnet.post
    path = "app.bsky.feed.post/" + post.uri.rsplit("/", 1)[1]
    client = AsyncFirehoseSubscribeReposClient(params={"cursor": 0}, base_uri=devnet.firehose_url)
    found: dict[str, Any] = {}

    async def on_message(message: firehose_models.MessageFrame) -> None:
        commit = parse_repos_message(message)
        if not isinstance(commit, models.ComAtprotoSyncSubscribeRepos.Commit) or commit.repo != post.did:
            return
        for op in commit.ops:
            if op.action == "create" and op.path == path:
                blocks = CAR.from_bytes(commit.blocks).blocks
                found["record"] = blocks[op.cid]
                found["cid"] = str(op.cid)
                await client.stop()

    await asyncio.wait_for(client.start(on_message), timeout=30)
    assert found["cid"] == post.cid
    ref = found["record"]["embed"]["images"][0]["image"]["ref"]  # a CID link, as bytes
    assert str(CID.decode(ref)) == post.blob_cid


class _StubLabeler(BaseHTTPRequestHandler):
    """Answers createReport like a labeler would and remembers what the PDS forwarded."""

    seen: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        self.seen.append({"path": self.path, "auth": self.headers.get("authorization", ""), "body": body})
        reply = json.dumps(
            {
                "id": 1,
                "reasonType": body["reasonType"],
                "subject": body["subject"],
                "reportedBy": "did:plc:unknown",
                "createdAt": "2026-01-01T00:00:00.000Z",
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stub_labeler() -> Iterator[Stub]:
    seen: list[dict[str, Any]] = []
    handler = type("Handler", (_StubLabeler,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def test_report_proxied_to_labeler_endpoint(devnet: Devnet, stub_labeler: Stub) -> None:
    """The whole §5.3 + §4.2 path: declare a labeler endpoint via the PDS, then a proxied report reaches it.

    Uses a fresh account, so the seeded `labeler` keeps an untouched DID document for later tests.
    """
    port, seen = stub_labeler
    endpoint = f"http://localhost:{port}"  # a host name: the PDS refuses to proxy to IP literals
    lab = create_account(devnet, "proxylab")
    report_input: dict[str, Any] = {
        "reason_type": "com.atproto.moderation.defs#reasonOther",
        "subject": models.ComAtprotoRepoStrongRef.Main(uri=devnet.post.uri, cid=devnet.post.cid),
    }
    proxy = {"atproto-proxy": f"{lab.did}#atproto_labeler"}
    # Before the update the PDS resolves (and may cache) a DID document without the service ...
    with login(devnet, "alice") as alice, pytest.raises(BadRequestError):
        alice.com.atproto.moderation.create_report(report_input, headers=proxy)

    token = plc_operation_token(devnet, lab)
    with login(devnet, lab) as client:
        creds = client.com.atproto.identity.get_recommended_did_credentials()
        services = dict(creds.services)
        services["atproto_labeler"] = {"type": "AtprotoLabeler", "endpoint": endpoint}
        signed = client.com.atproto.identity.sign_plc_operation(
            {
                "token": token,
                "rotation_keys": creds.rotation_keys,
                "also_known_as": creds.also_known_as,
                "verification_methods": creds.verification_methods,
                "services": services,
            }
        )
        client.com.atproto.identity.submit_plc_operation({"operation": signed.operation})
    doc = httpx.get(f"{devnet.plc_url}/{lab.did}", timeout=5).json()
    assert {"id": "#atproto_labeler", "type": "AtprotoLabeler", "serviceEndpoint": endpoint} in doc["service"]

    # ... and right after it, a freshly made post (through the control server) is reported through it.
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
    )
    target = post_image(devnet, "alice", png, "reported post")
    with login(devnet, "alice") as alice:
        report_input["subject"] = models.ComAtprotoRepoStrongRef.Main(uri=target.uri, cid=target.cid)
        report = alice.com.atproto.moderation.create_report(report_input, headers=proxy)
    assert report.id == 1
    assert len(seen) == 1
    assert seen[0]["path"] == f"/xrpc/{CREATE_REPORT}"
    assert seen[0]["body"]["subject"]["uri"] == target.uri
    jwt = seen[0]["auth"].removeprefix("Bearer ")
    with id_resolver(devnet) as resolver:
        payload = verify_jwt(jwt, resolver.did.resolve_atproto_key)
    assert payload.iss == devnet.alice.did
    assert payload.aud in (lab.did, f"{lab.did}#atproto_labeler")
    assert payload.lxm == CREATE_REPORT


def _plc_signed(op: dict[str, Any], key: coincurve.PrivateKey) -> dict[str, Any]:
    """Sign a PLC operation: compact low-S secp256k1 over sha256 of its DAG-CBOR (libsecp256k1 is low-S)."""
    digest = hashlib.sha256(libipld.encode_dag_cbor(op)).digest()
    sig = key.sign_recoverable(digest, hasher=None)[:64]
    return {**op, "sig": base64.urlsafe_b64encode(sig).decode().rstrip("=")}


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().lower().rstrip("=")


def test_pds_sees_direct_plc_update_at_once(devnet: Devnet, stub_labeler: Stub) -> None:
    """A labeler DID that lives only on the PLC (self-held rotation key) and gains its endpoint later.

    The PDS resolves it once before the update; it must not serve that stale document afterwards
    (devnet.mjs sets the PDS DID cache TTLs to 1 ms).
    """
    port, seen = stub_labeler
    key = coincurve.PrivateKey()
    did_key = format_did_key("ES256K", key.public_key.format(compressed=True))
    genesis = _plc_signed(
        {
            "type": "plc_operation",
            "rotationKeys": [did_key],
            "verificationMethods": {"atproto_label": did_key},
            "alsoKnownAs": [],
            "services": {},
            "prev": None,
        },
        key,
    )
    genesis_bytes = libipld.encode_dag_cbor(genesis)
    did = "did:plc:" + _b32(hashlib.sha256(genesis_bytes).digest())[:24]
    httpx.post(f"{devnet.plc_url}/{did}", json=genesis, timeout=5).raise_for_status()

    report_input = {
        "reason_type": "com.atproto.moderation.defs#reasonOther",
        "subject": models.ComAtprotoRepoStrongRef.Main(uri=devnet.post.uri, cid=devnet.post.cid),
    }
    proxy = {"atproto-proxy": f"{did}#atproto_labeler"}
    with login(devnet, "alice") as alice:
        with pytest.raises(BadRequestError):
            alice.com.atproto.moderation.create_report(report_input, headers=proxy)

        prev_cid = "b" + _b32(bytes([0x01, 0x71, 0x12, 0x20]) + hashlib.sha256(genesis_bytes).digest())
        update = _plc_signed(
            {
                **{k: v for k, v in genesis.items() if k != "sig"},
                "services": {"atproto_labeler": {"type": "AtprotoLabeler", "endpoint": f"http://localhost:{port}"}},
                "prev": prev_cid,
            },
            key,
        )
        httpx.post(f"{devnet.plc_url}/{did}", json=update, timeout=5).raise_for_status()

        report = alice.com.atproto.moderation.create_report(report_input, headers=proxy)
    assert report.id == 1
    assert len(seen) == 1
