"""The error contract across endpoints: every failure is `{"error", "message"}` with a 4xx and a name we define."""

from __future__ import annotations

import inspect
from typing import Any

import httpx
import pytest

from labeler.protocol import errors

OUR_NAMES = {cls.name for _, cls in inspect.getmembers(errors, inspect.isclass) if issubclass(cls, errors.XrpcError)}
CASES = [
    ("GET", "/xrpc/com.atproto.label.queryLabels", {}, None, 400),
    ("GET", "/xrpc/com.atproto.label.queryLabels?uriPatterns=*&cursor=x", {}, None, 400),
    ("POST", "/xrpc/com.atproto.label.queryLabels?uriPatterns=*", {}, None, 405),
    ("GET", "/xrpc/com.atproto.label.subscribeLabels", {}, None, 426),
    ("GET", "/xrpc/tools.ozone.moderation.emitEvent", {}, None, 405),
    ("POST", "/xrpc/tools.ozone.moderation.emitEvent", {}, b"{}", 401),
    ("POST", "/xrpc/tools.ozone.moderation.emitEvent", {"authorization": "Basic !!!"}, b"{}", 401),
    ("POST", "/xrpc/com.atproto.moderation.createReport.nope", {}, b"{}", 501),
    ("GET", "/xrpc/app.bsky.feed.getTimeline", {}, None, 501),
    ("GET", "/no/such/path", {}, None, 404),
    ("POST", "/xrpc/tools.ozone.moderation.emitEvent", {}, b"x" * (300 * 1024), 413),
]


@pytest.mark.parametrize(("method", "path", "headers", "body", "status"), CASES)
async def test_error_shape(
    server: Any, method: str, path: str, headers: dict[str, str], body: Any, status: int
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.request(method, path, headers=headers, content=body)
    assert response.status_code == status, response.text
    payload = response.json()
    assert set(payload) <= {"error", "message"} and isinstance(payload.get("message", ""), str)
    assert payload["error"] in OUR_NAMES


def test_every_protocol_error_name_has_a_class() -> None:
    needed = {"InvalidRequest", "AuthRequired", "BadJwt", "JwtExpired", "BadJwtAudience", "BadJwtLexiconMethod",
              "BadJwtIss", "BadJwtSignature", "FutureCursor", "ConsumerTooSlow", "PayloadTooLarge",
              "InternalServerError", "MethodNotImplemented", "RateLimitExceeded"}  # fmt: skip
    assert needed <= OUR_NAMES


async def test_internal_errors_do_not_leak(server: Any) -> None:
    # Swap the store's engine rather than dispose the real one: disposing under the running hub would orphan a
    # checked-out connection (an unclosed-connection warning in some later test).
    store = server.labeler.store
    real, store.engine = store.engine, _BrokenEngine()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            response = await client.get("/xrpc/com.atproto.label.queryLabels", params={"uriPatterns": "*"})
            health = await client.get("/xrpc/_health")
    finally:
        store.engine = real
    assert response.status_code == 500
    assert response.json() == {"error": "InternalServerError", "message": "internal error"}
    assert health.status_code == 503


class _BrokenEngine:
    def connect(self) -> Any:
        raise RuntimeError("secret connection string postgresql://user:pw@db")
