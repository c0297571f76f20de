"""The signed webhook for every action: a rule with `webhook_distance` has each of its actions' outcomes, and
their reversals', delivered to the operator's tool, signed like the review webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest
from pipeline.blob_server import PdsWorld
from pipeline.conftest import pds_world  # noqa: F401 (fixture)
from pipeline.corpus import encode, structured_rgb
from pipeline.harness import Harness, all_done, eventually
from pipeline.test_review import SECRET, Receiver
from support.server import serve_in_thread

from labeler.pipeline.hasher import hash_image


@pytest.fixture
def hook() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()
    receiver.failures_left = 0
    with serve_in_thread(receiver.app) as server:
        yield receiver, f"{server.url}/hook"


async def test_every_action_and_its_reversal_reaches_the_webhook(
    pds_world: PdsWorld,  # noqa: F811
    make_settings: Any,
    hook: tuple[Receiver, str],
) -> None:
    receiver, url = hook
    harness = Harness(pds_world, make_settings, "embedded", None)
    rule = {"name": "told", "banks": ["KNOWN"], "labels": ["spam"], "label_distance": 31, "webhook_distance": 31}
    settings = harness.settings(
        extra={"review": {"webhook_url": url, "webhook_secret": SECRET}, "policy": {"rules": [rule]}}
    )
    image = encode(structured_rgb(160, 120, seed=99), "PNG")
    spec = harness.post(pds_world.account(), "p", image)
    with pds_world.pds_running():
        async with harness.running(settings, workers=1) as labeler:
            await harness.bank(labeler, "KNOWN", [hash_image(image).hash])
            await labeler.pipeline.jobs.enqueue([spec])
            await all_done(labeler, 1)

            async def delivered(count: int) -> bool:
                return len(receiver.deliveries) >= count

            await eventually(lambda: delivered(1), what="the label's outcome at the webhook")
            [label] = await labeler.pipeline.actioner.outbox.list(kind="label")
            await labeler.pipeline.decisions.label_negated(
                spec.subject_uri, spec.subject_cid, ["spam"], actor="did:plc:moderator", note="not spam"
            )
            await eventually(lambda: delivered(2), what="the reversal's outcome at the webhook")
    events = []
    for headers, body in receiver.deliveries:
        mac = hmac.new(SECRET.encode(), headers["x-labeler-timestamp"].encode() + b"." + body, hashlib.sha256)
        assert headers["x-labeler-signature"] == "sha256=" + mac.hexdigest()
        events.append(json.loads(body))
    applied, reversed_ = events
    assert (applied["type"], applied["action"]["id"], applied["action"]["kind"]) == ("action.done", label.id, "label")
    assert applied["evidence"]["rule"]["name"] == "told" and applied["evidence"]["match"]["distance"] == 0
    assert (reversed_["type"], reversed_["action"]["reverses"], reversed_["action"]["actor"]) == (
        "action.done", label.id, "did:plc:moderator",
    )  # fmt: skip
    assert reversed_["action"]["result"]["negated"] == ["spam"]
