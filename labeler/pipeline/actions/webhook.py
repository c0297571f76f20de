"""`webhook`: every action's outcome, and every new review item, POSTed as signed JSON to the operator's tool.

Configured under `[review]` (where the review webhook always was):

    [review]
    webhook_url = "https://review.example/hooks/labeler"
    webhook_secret = "…"            # required with a URL
    webhook_timeout = 5.0           # seconds per attempt
    webhook_max_attempts = 8        # then the delivery is `failed`

Events, one delivery each: `review.created` (`{"type", "item"}`) for every new review item, and, for rules with
`webhook_distance`, `action.done` / `action.skipped` / `action.failed` / `action.cancelled` (`{"type",
"action", "evidence"}`) for each of the decision's actions and their reversals. Bodies are built when sent, from
the current rows. Headers: `X-Labeler-Delivery: <delivery id>` (an idempotency key: delivery is at least once),
`X-Labeler-Timestamp: <unix seconds>`, `X-Labeler-Signature: sha256=<hex>` where the hex is
HMAC-SHA256(secret, "<timestamp>.<body>"). Any 2xx is success; anything else is retried with backoff.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any, ClassVar

import httpx

from labeler.pipeline.actions.config import WebhookConfig
from labeler.pipeline.actions.model import Action, ActionSpec, Outcome, done, skipped, unavailable
from labeler.pipeline.actions.outbox import Outbox
from labeler.pipeline.review import ReviewError, ReviewQueue

REVIEW_CREATED = "review.created"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Labeler-Signature` value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookKind:
    name: ClassVar[str] = "webhook"
    local: ClassVar[bool] = False

    def __init__(self, config: WebhookConfig, outbox: Outbox, reviews: ReviewQueue) -> None:
        self.config = config
        self.outbox = outbox
        self.reviews = reviews
        self.max_attempts = config.max_attempts
        self._client = httpx.AsyncClient(timeout=config.timeout, trust_env=False, follow_redirects=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    def followups(self, action: Action) -> list[ActionSpec]:
        """The deliveries `action` reaching its final state calls for."""
        if action.kind == self.name:
            return []
        events = []
        if action.kind == "review" and action.op == "apply" and action.state == "done":
            events.append((REVIEW_CREATED, {"review_item": (action.result or {})["review_item"]}))
        if action.notify:
            events.append((f"action.{action.state}", {"action": action.id}))
        return [
            ActionSpec(
                kind=self.name,
                subject_uri=action.subject_uri,
                subject_cid=action.subject_cid,
                params={"event": event, **ref},
                dedupe_key=f"webhook|{event}|{next(iter(ref.values()))}",
                actor=action.actor,
                decision=action.decision,
                job_id=action.job_id,
                rule=action.rule,
            )
            for event, ref in events
        ]

    async def apply(self, action: Action) -> Outcome:
        payload = await self._payload(action.params)
        if payload is None:
            return skipped("gone", "what the event is about no longer exists")
        body = json.dumps(payload, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            "x-labeler-delivery": str(action.id),
            "x-labeler-timestamp": timestamp,
            "x-labeler-signature": sign(self.config.secret, timestamp, body),
        }
        try:
            response = await self._client.post(self.config.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return unavailable(type(exc).__name__, f"POST to the webhook failed: {exc}")
        if not response.is_success:
            return unavailable(f"http-{response.status_code}", f"the webhook answered HTTP {response.status_code}")
        return done("delivered", f"HTTP {response.status_code}")

    async def reverse(self, action: Action, original: Action) -> Outcome:
        return skipped("not-reversible", "a delivered notification cannot be taken back")

    async def _payload(self, params: dict[str, Any]) -> dict[str, Any] | None:
        event = params["event"]
        if event == REVIEW_CREATED:
            try:
                item = await self.reviews.get(params["review_item"])
            except ReviewError:
                return None
            return {"type": event, "item": item.to_json()}
        subject = await self.outbox.get(params["action"])
        if subject is None:
            return None
        return {"type": event, "action": subject.to_json(), "evidence": subject.evidence}
