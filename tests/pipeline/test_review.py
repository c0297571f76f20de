"""The review queue: items from the pipeline, the signed webhook, confirm/reject over HTTP and the CLI, explain."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from support.server import serve_in_thread

from labeler.cli import cli
from labeler.config import Settings
from labeler.pipeline.hasher import hash_image
from labeler.pipeline.jobs import JobSpec
from labeler.testing import serve_labeler

from .blob_server import PdsWorld
from .corpus import encode, flip_bits, structured_rgb
from .harness import Harness, all_done, eventually

FIRST = encode(structured_rgb(160, 120, seed=21), "PNG")
SECOND = encode(structured_rgb(160, 120, seed=22), "PNG")
SECRET = "a-webhook-secret-of-some-length"
ADMIN = ("admin", "test-admin-password")


class Receiver:
    """A review tool's webhook endpoint: fails the first delivery, records the rest."""

    def __init__(self) -> None:
        self.failures_left = 1
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        with self.lock:
            if self.failures_left:
                self.failures_left -= 1
                return Response(status_code=500)
            self.deliveries.append((dict(request.headers), body))
        return Response(status_code=204)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    hook = Receiver()
    with serve_in_thread(hook.app) as server:
        yield hook, f"{server.url}/hook"


async def queue_two_reviews(harness: Harness, settings: Settings) -> list[JobSpec]:
    """Two posts whose images are 20 and 15 bits from banked hashes: both go to review, neither is labelled."""
    did = harness.world.account()
    specs = [harness.post(did, "first", FIRST), harness.post(did, "second", SECOND)]
    async with harness.running(settings) as labeler:
        banked = [flip_bits(hash_image(FIRST).hash, 20, seed=1), flip_bits(hash_image(SECOND).hash, 15, seed=2)]
        await harness.bank(labeler, "NEAR", banked)
        await labeler.pipeline.jobs.enqueue(specs)
        await all_done(labeler, 2)
    return specs


async def test_review_over_http_with_the_webhook(
    pds_world: PdsWorld, make_settings: Any, receiver: tuple[Receiver, str]
) -> None:
    hook, url = receiver
    harness = Harness(pds_world, make_settings, "embedded", None)
    settings = harness.settings(extra={"review": {"webhook_url": url, "webhook_secret": SECRET}})
    with pds_world.pds_running():
        first, second = await queue_two_reviews(harness, settings)
    async with harness.running(settings, workers=1) as labeler, serve_labeler(labeler) as live:
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
            assert (await http.get("/api/v1/review")).status_code == 401
            listed = (await http.get("/api/v1/review", auth=ADMIN)).json()
            items = {i["subject"]["uri"]: i for i in listed["items"]}
            one, two = items[first.subject_uri], items[second.subject_uri]
            assert (one["status"], one["labels"], one["evidence"]["match"]["distance"]) == (
                "pending", ["csam-hash-match"], 20,
            )  # fmt: skip
            assert (
                one["evidence"]["image"]["blob_cid"] == first.image.blob_cid and one["evidence"]["action"] == "review"
            )
            assert await labeler.store.query([first.subject_uri], [], 0, 10) == []

            async def delivered() -> bool:
                return len(hook.deliveries) == 2

            await eventually(delivered, what="webhook deliveries")
            sent = {a.id: a for a in await labeler.pipeline.actioner.outbox.list(kind="webhook")}
            for headers, body in hook.deliveries:
                expected = hmac.new(
                    SECRET.encode(), headers["x-labeler-timestamp"].encode() + b"." + body, hashlib.sha256
                )
                assert headers["x-labeler-signature"] == "sha256=" + expected.hexdigest()
                payload = json.loads(body)
                delivery = sent[int(headers["x-labeler-delivery"])]  # the delivery's own outbox row
                assert payload["type"] == "review.created" and payload["item"]["id"] == delivery.params["review_item"]
            assert sorted(json.loads(body)["item"]["id"] for _, body in hook.deliveries) == sorted(
                [one["id"], two["id"]]
            )

            confirmed = await http.post(f"/api/v1/review/{one['id']}/confirm", auth=ADMIN, json={"note": "seen"})
            assert confirmed.status_code == 200 and confirmed.json()["status"] == "confirmed", confirmed.text
            again = await http.post(f"/api/v1/review/{one['id']}/confirm", auth=ADMIN)
            assert again.status_code == 400 and "already confirmed" in again.json()["message"]
            rejected = await http.post(f"/api/v1/review/{two['id']}/reject", auth=ADMIN)
            assert rejected.json()["status"] == "rejected"
            assert (await http.get("/api/v1/review/999999", auth=ADMIN)).status_code == 404
            shown = (await http.get(f"/api/v1/review/{one['id']}", auth=ADMIN)).json()
            assert (shown["decided_by"], shown["decided_via"]) == ("admin", "api")
            webhooks = await labeler.pipeline.actioner.outbox.list(kind="webhook")
            # Both delivered; the one that met the receiver's failure (whichever went first) took two attempts.
            assert sorted((a.state, a.outcome, a.attempts) for a in webhooks) == [
                ("done", "delivered", 1),
                ("done", "delivered", 2),
            ]
        [label] = await labeler.store.query([first.subject_uri], [], 0, 10)
        assert (label.label.val, label.label.cid) == ("csam-hash-match", first.subject_cid)
        [event] = await labeler.store.events_for(first.subject_uri)
        assert event["via"] == "review" and event["evidence"]["review"]["decided_by"] == "admin"
        assert event["evidence"]["match"]["distance"] == 20
        assert await labeler.store.query([second.subject_uri], [], 0, 10) == []


def test_review_and_explain_from_the_cli(
    pds_world: PdsWorld, make_settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = Harness(pds_world, make_settings, "embedded", None)
    settings = harness.settings()
    with pds_world.pds_running():
        first, second = asyncio.run(queue_two_reviews(harness, settings))
    for name in list(os.environ):
        if name.startswith("LABELER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABELER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LABELER_KEYS_DIR", str(settings.keys_dir))
    monkeypatch.setenv("LABELER_DID", settings.did)
    runner = CliRunner()

    def ok(*args: str) -> str:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    listed = json.loads(ok("review", "list", "--json"))
    ids = {i["subject"]["uri"]: i["id"] for i in listed}
    assert "bank NEAR entry" in ok("review", "list") and "at distance 20" in ok("review", "list")
    assert json.loads(ok("review", "show", str(ids[first.subject_uri])))["status"] == "pending"
    assert "confirmed" in ok("review", "confirm", str(ids[first.subject_uri]), "--note", "matches case 12")
    assert "rejected" in ok("review", "reject", str(ids[second.subject_uri]))
    assert json.loads(ok("review", "show", str(ids[second.subject_uri])))["decided_via"] == "cli"
    result = runner.invoke(cli, ["review", "confirm", str(ids[second.subject_uri])])
    assert result.exit_code == 1 and "already rejected" in result.output
    assert ok("review", "list") == "no pending review items\n"

    text = ok("explain", first.subject_uri)
    assert "csam-hash-match" in text and "by cli via review" in text and "reason: matches case 12" in text
    assert "bank NEAR entry" in text and "at distance 20" in text and "confirmed in review" in text
    assert f"image {first.image.blob_cid}: match/review" in text
    report = json.loads(ok("explain", first.subject_uri, "--json"))
    assert [label["val"] for label in report["labels"]] == ["csam-hash-match"]
    assert report["jobs"][0]["pdq"] == hash_image(FIRST).hash
    assert report["review_items"][0]["status"] == "confirmed"
    assert "current labels: none" in ok("explain", second.subject_uri)
