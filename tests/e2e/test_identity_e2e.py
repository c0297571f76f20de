"""The operator's identity toolkit against Bluesky's own PLC directory and PDS (devnet).

Every step goes through the `labeler` CLI as an operator would run it (`init`, `keys`, `did`, `declare`,
`doctor`), while our labeler is served by real uvicorn at `http://localhost:PORT` in the test's event loop. CLI
commands run in a worker thread (they start their own event loop), so the served labeler keeps answering.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from atproto import models
from atproto_client.models.utils import get_or_create
from websockets.asyncio.client import connect

from labeler.cli._config_file import save_did
from labeler.identity.resolver import DidResolver
from labeler.keys import RELOAD_INTERVAL, read_key_file
from labeler.labels.writer import LabelRequest
from labeler.protocol.frames import decode_frame
from labeler.protocol.label import verify_received

from .harness import Account, Devnet, get_mail, plc_operation_token
from .operator import Operator, new_operator, served

LABEL_COUNT = 1000
DECLARED = "csam-hash-match"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("LABELER_"):
            monkeypatch.delenv(name)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def resolver(devnet: Devnet) -> AsyncIterator[DidResolver]:
    async with DidResolver(plc_url=devnet.plc_url, refresh_cooldown=0) as r:
        yield r


async def plc_data(devnet: Devnet, did: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{devnet.plc_url}/{did}/data")
        response.raise_for_status()
        return dict(response.json())


class MailTokenInput(io.RawIOBase):
    """stdin for the token prompt: on first read, waits for the PDS's PLC-operation email and "types" its token."""

    def __init__(self, devnet: Devnet, account: Account) -> None:
        self.devnet, self.account = devnet, account
        self.seen = len(get_mail(devnet))
        self.data: bytes | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if len(buffer) == 0:
            return 0
        if self.data is None:
            self.data = (self._wait_for_token() + "\n").encode()
        n = min(len(buffer), len(self.data))
        buffer[:n], self.data = self.data[:n], self.data[n:]
        return n

    def _wait_for_token(self) -> str:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for mail in get_mail(self.devnet)[self.seen :]:
                if mail.to == self.account.email and mail.template == "plcOperation" and mail.token:
                    return mail.token
            time.sleep(0.05)
        raise AssertionError("no PLC operation email")


# ---------------------------------------------------------------------------------------------------------
# 1. did:plc with our own rotation key; the PDS route on an existing account; the declaration; doctor.


async def test_did_create_and_update_with_our_rotation_key(
    devnet: Devnet, tmp_path: Path, resolver: DidResolver
) -> None:
    op = await new_operator(devnet, tmp_path / "own")
    assert "labeler keys generate --purpose rotation" in await op.fails("did", "create")
    await op.ok("keys", "generate", "--purpose", "rotation")
    out = await op.ok("did", "create", "--handle", "hash-labeler.test")
    did = op.settings.did  # recorded in labeler.toml
    assert did.startswith("did:plc:") and did in out
    assert await resolver.label_key(did, force_refresh=True) == op.keyring.active()[0].did_key
    assert await resolver.labeler_endpoint(did) == "http://localhost:1"
    data = await plc_data(devnet, did)
    assert data["rotationKeys"] == [read_key_file(op.settings.keys_dir / "rotation.pem").did_key]
    assert data["alsoKnownAs"] == ["at://hash-labeler.test"]
    assert "already names" in await op.fails("did", "create")

    async with served(op) as (_, live):
        await op.ok("did", "update")  # publishes the served endpoint
        assert await resolver.labeler_endpoint(did, force_refresh=True) == f"http://localhost:{live.port}"
        async with httpx.AsyncClient() as http:
            audit = (await http.get(f"{devnet.plc_url}/{did}/log/audit")).json()
        assert len(audit) == 2 and audit[1]["operation"]["prev"] == audit[0]["cid"]
        shown = json.loads(await op.ok("did", "show"))
        assert shown["id"] == did and [s["id"] for s in shown["service"]] == ["#atproto_labeler"]


async def test_pds_route_declare_and_doctor(devnet: Devnet, tmp_path: Path, resolver: DidResolver) -> None:
    account = devnet.labeler
    op = await new_operator(devnet, tmp_path / "pds")
    before = await plc_data(devnet, account.did)
    async with served(op) as (_, live):
        # The interactive route: the PDS emails a token, the operator types it at the prompt.
        await op.ok(
            "did", "link-pds", "--pds", devnet.pds_url, "--identifier", account.handle, "--password", account.password,
            stdin=io.BufferedReader(MailTokenInput(devnet, account)),
        )  # fmt: skip
        assert op.settings.did == account.did  # recorded in labeler.toml
        after = await plc_data(devnet, account.did)
        label_key = op.keyring.active()[0].did_key
        assert after["verificationMethods"] == {**before["verificationMethods"], "atproto_label": label_key}
        assert after["services"] == {
            **before["services"],
            "atproto_labeler": {"type": "AtprotoLabeler", "endpoint": op.public_url},
        }
        assert after["rotationKeys"] == before["rotationKeys"]
        assert after["alsoKnownAs"] == before["alsoKnownAs"]
        assert await resolver.label_key(account.did, force_refresh=True) == label_key

        assert json.loads(await op.ok("declare", "--dry-run"))["policies"]["labelValues"] == [DECLARED]
        out = await op.ok("declare", "--pds", devnet.pds_url, "--password", account.password)
        assert f"at://{account.did}/app.bsky.labeler.service/self" in out
        async with httpx.AsyncClient() as http:
            got = await http.get(
                f"{devnet.pds_url}/xrpc/com.atproto.repo.getRecord",
                params={"repo": account.did, "collection": "app.bsky.labeler.service", "rkey": "self"},
            )
        assert got.status_code == 200, got.text
        record = get_or_create(got.json()["value"], models.AppBskyLabelerService.Record, strict=True)
        assert record is not None and record.policies.label_values == [DECLARED]

    # The operator restarts `labeler serve`, which now signs and re-signs as the linked DID, at the same URL.
    async with served(op, port=live.port) as (labeler, _):
        await labeler.writer.write([LabelRequest(uri=devnet.post.uri, cid=devnet.post.cid, val=DECLARED)])
        report = json.loads(await op.ok("doctor", "--json", "--wait", "0.5"))
        assert report["healthy"] is True, report
        statuses = {c["check"]: c["status"] for c in report["checks"]}
        identity_checks = [
            "did-document", "label-key", "labeler-endpoint", "endpoint-reachable", "query-labels",
            "subscribe-labels", "declaration", "declared-values", "value-syntax", "own-content",
        ]  # fmt: skip
        assert {check: statuses[check] for check in identity_checks} == dict.fromkeys(identity_checks, "ok")
        assert statuses["matcher"] == "warn"  # embedded, and no banks: nothing can match

        # Rotation through the PDS, with a token the operator already has (--token).
        old_key = op.keyring.active()[0]
        token = await asyncio.to_thread(plc_operation_token, devnet, "labeler")
        await op.ok("keys", "rotate", "--via-pds", "--password", account.password, "--token", token)
        new_key = op.keyring.active()[0]
        assert new_key.id != old_key.id
        assert await resolver.label_key(account.did, force_refresh=True) == new_key.did_key
        assert (await plc_data(devnet, account.did))["rotationKeys"] == before["rotationKeys"]
        await asyncio.sleep(RELOAD_INTERVAL + 0.1)  # the running server notices keyring.json changed
        report = json.loads(await op.ok("doctor", "--json", "--wait", "0.5"))
        assert report["healthy"] is True, report


# ---------------------------------------------------------------------------------------------------------
# 2. Rotation: 1,000 labels under key A, rotate to B (our rotation key), everything verifies against B.


async def query_all(endpoint: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    async with httpx.AsyncClient(base_url=endpoint) as http:
        while True:
            params: dict[str, Any] = {"uriPatterns": "*", "limit": 250, **({"cursor": cursor} if cursor else {})}
            body = (await http.get("/xrpc/com.atproto.label.queryLabels", params=params)).json()
            out += body["labels"]
            cursor = body.get("cursor")
            if not cursor or not body["labels"]:
                return out


async def replay(ws_base: str, count: int) -> list[tuple[int, dict[str, Any]]]:
    """Every (seq, label) from `cursor=0`, as a consumer catching up sees them."""
    out: list[tuple[int, dict[str, Any]]] = []
    async with connect(f"{ws_base}/xrpc/com.atproto.label.subscribeLabels?cursor=0") as ws:
        while len(out) < count:
            header, body = decode_frame(await asyncio.wait_for(ws.recv(), 10))
            assert header == {"op": 1, "t": "#labels"}, body
            out += [(body["seq"], label) for label in body["labels"]]
    return out


async def test_rotation_re_signs_everything_for_the_new_key(
    devnet: Devnet, tmp_path: Path, resolver: DidResolver
) -> None:
    op = await new_operator(devnet, tmp_path / "rotate")
    await op.ok("keys", "generate", "--purpose", "rotation")
    await op.ok("did", "create")
    did = op.settings.did
    async with served(op) as (labeler, live):
        await op.ok("did", "update")
        key_a = op.keyring.active()[0]
        written = await labeler.writer.write(
            [
                LabelRequest(uri=f"at://{devnet.alice.did}/app.bsky.feed.post/{i:06d}", val=DECLARED)
                for i in range(LABEL_COUNT)
            ]
        )
        original = {row.label.uri: (row.seq, row.label.cts) for row in written}

        out = await op.ok("keys", "rotate")
        key_b = op.keyring.active()[0]
        assert key_b.id != key_a.id and f"{key_a.id} (retired)" in out
        document_key = await resolver.label_key(did, force_refresh=True)
        assert document_key == key_b.did_key
        await asyncio.sleep(RELOAD_INTERVAL + 0.1)  # the running server notices keyring.json changed

        queried = await query_all(live.url)
        assert len(queried) == LABEL_COUNT
        for label in queried:
            assert verify_received(label, document_key), label
            assert not verify_received(label, key_a.did_key)
            assert original[label["uri"]][1] == label["cts"]
        replayed = await replay(live.ws_url, LABEL_COUNT)
        assert [seq for seq, _ in replayed] == sorted(seq for seq, _ in original.values())
        for seq, label in replayed:
            assert verify_received(label, document_key)
            assert original[label["uri"]] == (seq, label["cts"])

    keys = {k["id"]: k for k in json.loads(await op.ok("keys", "list", "--json"))}
    assert keys[key_a.id]["retired_at"] and not keys[key_a.id]["active"] and keys[key_b.id]["active"]
    assert (op.settings.keys_dir / key_a.file).exists()  # retired, not deleted
    assert "re-signed 0 labels" in await op.ok("keys", "resign")  # the reads above already re-signed (and persisted)


# ---------------------------------------------------------------------------------------------------------
# 3. Bad input: a clear message, and nothing half-changed (the new key stays inactive, the DID unchanged).


async def assert_unchanged(op: Operator, active_id: str) -> None:
    keys = json.loads(await op.ok("keys", "list", "--json"))
    assert [k["id"] for k in keys if k["active"]] == [active_id]
    assert all(k["retired_at"] is None for k in keys)


async def test_wrong_token_and_app_password_are_refused(devnet: Devnet, tmp_path: Path) -> None:
    bob = devnet.bob
    op = await new_operator(devnet, tmp_path / "bob")
    before = await plc_data(devnet, bob.did)
    pds = ("--pds", devnet.pds_url, "--identifier", bob.handle)
    out = await op.fails("did", "link-pds", *pds, "--password", bob.password, "--token", "WRONG-TOKEN")
    assert "signPlcOperation failed" in out and "Token" in out, out
    out = await op.fails("did", "link-pds", *pds, "--password", "wrong-password", "--token", "x")
    assert "check the identifier and password" in out, out

    # The PDS refuses an app password for identity changes.
    async with httpx.AsyncClient() as http:
        session = (await http.post(f"{devnet.pds_url}/xrpc/com.atproto.server.createSession",
                                   json={"identifier": bob.did, "password": bob.password})).json()  # fmt: skip
        app = await http.post(
            f"{devnet.pds_url}/xrpc/com.atproto.server.createAppPassword",
            json={"name": f"labeler-{time.time_ns()}"},
            headers={"authorization": f"Bearer {session['accessJwt']}"},
        )
    out = await op.fails("did", "link-pds", *pds, "--password", app.json()["password"], "--token", "x")
    assert "full password" in out, out

    # Rotation through the PDS with a wrong token: the new key is generated but never activated.
    assert save_did(op.folder / "labeler.toml", bob.did)  # as if this labeler were bob's
    active = op.keyring.active_id
    assert active is not None
    out = await op.fails("keys", "rotate", "--via-pds", *pds, "--password", bob.password, "--token", "WRONG")
    assert "NOT activated" in out and "signPlcOperation failed" in out, out
    await assert_unchanged(op, active)
    assert await plc_data(devnet, bob.did) == before


async def test_plc_directory_down(devnet: Devnet, tmp_path: Path) -> None:
    op = await new_operator(devnet, tmp_path / "own")
    await op.ok("keys", "generate", "--purpose", "rotation")
    await op.ok("did", "create")
    did, active = op.settings.did, op.keyring.active_id
    assert active is not None
    toml = op.folder / "labeler.toml"
    toml.write_text(toml.read_text().replace(devnet.plc_url, f"http://127.0.0.1:{closed_port()}"))
    out = await op.fails("keys", "rotate")
    assert "cannot reach the PLC directory" in out and "NOT activated" in out, out
    await assert_unchanged(op, active)
    out = await op.fails("did", "create", "--force")
    assert "cannot reach the PLC directory" in out
    assert op.settings.did == did  # the config still names the working DID
