"""Outbound review webhook: each new review item is POSTed as signed JSON to an external review tool.

Configured under `[review]` in `labeler.toml`:

    [review]
    webhook_url = "https://review.example/hooks/labeler"
    webhook_secret = "…"            # required with a URL
    webhook_timeout = 5.0           # seconds per attempt
    webhook_max_attempts = 8        # then the item's webhook state is `failed` (the item stays in the queue)

Request: `POST` with `content-type: application/json`, body `{"type": "review.created", "item": {…}}`, and
headers `X-Labeler-Delivery: <item id>` (an idempotency key: delivery is at least once),
`X-Labeler-Timestamp: <unix seconds>`, `X-Labeler-Signature: sha256=<hex>` where the hex is
HMAC-SHA256(secret, "<timestamp>.<body>"). Receivers should recompute it and reject stale timestamps.
Any 2xx is success; anything else is retried with exponential backoff. Items wait in the database (an outbox),
so deliveries survive restarts; each attempt first pushes the item's next time forward, so two processes do
not send the same attempt. Processes that run workers run the sender.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from labeler.config import ConfigError
from labeler.pipeline.jobs import backoff_delay
from labeler.pipeline.review import ReviewItem, ReviewQueue
from labeler.store.pipeline_schema import review_items

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    secret: str
    timeout: float = 5.0
    max_attempts: int = 8


def load_webhook(extra: dict[str, Any]) -> WebhookConfig | None:
    table = extra.get("review", {})
    if not isinstance(table, dict):
        raise ConfigError("[review] must be a table")
    url = table.get("webhook_url")
    if not url:
        return None
    secret = table.get("webhook_secret")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError("[review] webhook_url must be an http(s) URL")
    if not isinstance(secret, str) or len(secret) < 16:
        raise ConfigError("[review] webhook_secret must be a string of at least 16 characters")
    try:
        return WebhookConfig(
            url, secret, float(table.get("webhook_timeout", 5.0)), int(table.get("webhook_max_attempts", 8))
        )
    except (TypeError, ValueError):
        raise ConfigError("[review] webhook_timeout / webhook_max_attempts must be numbers") from None


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Labeler-Signature` value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookSender:
    """Delivers pending items from the outbox until stopped."""

    def __init__(self, engine: AsyncEngine, reviews: ReviewQueue, config: WebhookConfig, *, poll: float = 1.0) -> None:
        self.engine = engine
        self.reviews = reviews
        self.config = config
        self.poll = poll
        self._client = httpx.AsyncClient(timeout=config.timeout, trust_env=False, follow_redirects=False)

    async def run(self) -> None:
        try:
            while True:
                try:
                    sent = await self.deliver_due()
                except Exception:
                    log.exception("review webhook: delivery round failed")
                    sent = 0
                if not sent:
                    await asyncio.sleep(self.poll)
        finally:
            await self._client.aclose()

    async def deliver_due(self, limit: int = 20) -> int:
        """One round: try every due item once; returns how many attempts were made."""
        now = time.time()
        query = (
            sa.select(review_items.c.id, review_items.c.webhook_next_at)
            .where(review_items.c.webhook_state == "pending", review_items.c.webhook_next_at <= now)
            .order_by(review_items.c.webhook_next_at)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            due = (await conn.execute(query)).all()
        attempts = 0
        for item_id, next_at in due:
            if await self._take(item_id, next_at, now + 2 * self.config.timeout):
                await self._attempt(await self.reviews.get(item_id))
                attempts += 1
        return attempts

    async def _take(self, item_id: int, seen: float, until: float) -> bool:
        stmt = (
            review_items.update()
            .where(review_items.c.id == item_id, review_items.c.webhook_next_at == seen)
            .values(webhook_next_at=until)
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def _attempt(self, item: ReviewItem) -> None:
        body = json.dumps({"type": "review.created", "item": item.to_json()}, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            "x-labeler-delivery": str(item.id),
            "x-labeler-timestamp": timestamp,
            "x-labeler-signature": sign(self.config.secret, timestamp, body),
        }
        try:
            response = await self._client.post(self.config.url, content=body, headers=headers)
            ok, why = response.is_success, f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            ok, why = False, type(exc).__name__
        attempts = item.webhook_attempts + 1
        if ok:
            values: dict[str, Any] = {"webhook_state": "sent", "webhook_attempts": attempts, "webhook_next_at": None}
        elif attempts >= self.config.max_attempts:
            log.warning("review webhook: giving up on item %d after %d attempts (%s)", item.id, attempts, why)
            values = {"webhook_state": "failed", "webhook_attempts": attempts, "webhook_next_at": None}
        else:
            delay = backoff_delay(attempts, base=2.0, cap=600.0)
            log.info("review webhook: item %d attempt %d failed (%s); next in %.0fs", item.id, attempts, why, delay)
            values = {"webhook_attempts": attempts, "webhook_next_at": time.time() + delay}
        async with self.engine.begin() as conn:
            await conn.execute(review_items.update().where(review_items.c.id == item.id).values(**values))
