"""Going live, last step: `labeler doctor --appview` against Bluesky's reference AppView on the devnet.

An operator links an account's DID to the labeler, declares it and labels alice's post; the AppView (which indexes
the devnet's PDS) takes our labels through the harness's verifying ingester. Before the ingester has our labels
doctor reports that the AppView applies us but shows nothing; afterwards it reports our DID in
`atproto-content-labelers` and the label on the post.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
from support.labels import seed_labels

from labeler.labels.writer import LabelRequest
from labeler.protocol import syntax
from labeler.protocol.crypto import SigningKey
from labeler.protocol.label import Label

from .harness import AppView, Devnet, create_account, feed_labels, plc_operation_token
from .operator import Operator, new_operator, served

DECLARED = "csam-hash-match"


async def doctor_appview(op: Operator, appview: AppView) -> dict[str, Any]:
    """The `appview` finding of `labeler doctor --appview URL --json`, checking that the rest is healthy."""
    result = await asyncio.to_thread(op.invoke, "doctor", "--json", "--wait", "0.5", "--appview", appview.url)
    report = json.loads(result.output)
    others = [c for c in report["checks"] if c["check"] != "appview"]
    assert all(c["status"] != "fail" for c in others), others
    (finding,) = [c for c in report["checks"] if c["check"] == "appview"]
    assert result.exit_code == (0 if finding["status"] == "ok" else 1)
    return dict(finding)


async def wait_until_indexed(appview: AppView, did: str, post_uri: str) -> None:
    """The AppView has indexed the labeler's declaration and the post (it follows the PDS's firehose)."""
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=appview.url, timeout=10) as http:
        while time.monotonic() < deadline:
            services = await http.get("/xrpc/app.bsky.labeler.getServices", params={"dids": did})
            posts = await http.get("/xrpc/app.bsky.feed.getPosts", params={"uris": post_uri})
            if services.json().get("views") and posts.json().get("posts"):
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"the AppView did not index {did}'s declaration and {post_uri} in 30 s")


async def test_doctor_appview_shows_our_label(devnet: Devnet, appview: AppView, tmp_path: Path) -> None:
    account = await asyncio.to_thread(create_account, devnet, f"golive{secrets.token_hex(3)}")
    op = await new_operator(devnet, tmp_path / "golive")
    op.extra_env["LABELER_ALLOW_PRIVATE_FETCH"] = "true"  # the AppView is on loopback
    async with served(op) as (_, live):
        token = await asyncio.to_thread(plc_operation_token, devnet, account)
        await op.ok(
            "did", "link-pds", "--pds", devnet.pds_url, "--identifier", account.handle, "--password", account.password,
            "--token", token,
        )  # fmt: skip
        await op.ok("declare", "--pds", devnet.pds_url, "--password", account.password)
    async with served(op, port=live.port) as (labeler, _):  # restarted: it serves as the linked DID now
        await labeler.writer.write([LabelRequest(uri=devnet.post.uri, cid=devnet.post.cid, val=DECLARED)])
        await wait_until_indexed(appview, account.did, devnet.post.uri)

        before = await doctor_appview(op, appview)
        assert before["status"] == "fail", before
        assert f"applies {account.did} but shows no '{DECLARED}'" in before["message"]

        feed = await asyncio.to_thread(feed_labels, devnet, account.did, until_seq=await labeler.store.head())
        assert (feed.accepted, feed.rejected, feed.error) == (1, 0, None), feed
        after = await doctor_appview(op, appview)
        assert after["status"] == "ok", after
        assert after["message"] == f"{appview.url} applies {account.did} and shows {DECLARED} on {devnet.post.uri}"

        # The ingester verifies: a label signed by a key the DID document does not name is not taken.
        forged = Label(account.did, f"at://{devnet.alice.did}/app.bsky.feed.post/forged", DECLARED, syntax.now())
        await seed_labels(labeler, [forged], signer=SigningKey.generate())
        feed = await asyncio.to_thread(feed_labels, devnet, account.did, until_seq=await labeler.store.head())
        assert (feed.accepted, feed.rejected, feed.error) == (1, 1, None), feed
