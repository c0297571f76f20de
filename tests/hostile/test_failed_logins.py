"""Guessing the admin password or an upload token (issue #15, item 18: 754 wrong attempts a second from one client
were all answered 401). Past the allowance a client gets 429 with `Retry-After`, the right secret included, while
other clients keep theirs. Over real uvicorn, from distinct loopback addresses (127.0.0.0/8 is all loopback)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from labeler.config import Settings
from labeler.testing import LiveServer

from .callers import ADMIN, UPLOAD_TOKEN

ALLOWED = 3
REVIEW = "/api/v1/review?status=all"
MATCH = "/api/v1/match"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'labeler.db'}"


@pytest.fixture
def settings(make_settings: Any) -> Settings:
    return make_settings(upload_tokens=UPLOAD_TOKEN, max_login_failures=ALLOWED, login_failure_window=600)


@pytest.fixture
async def client_from(server: LiveServer) -> AsyncIterator[Callable[[str], httpx.AsyncClient]]:
    """An HTTP client connecting from the given loopback address."""
    made: list[httpx.AsyncClient] = []

    def make(address: str) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(local_address=address)
        made.append(httpx.AsyncClient(base_url=server.url, transport=transport, timeout=30))
        return made[-1]

    yield make
    for client in made:
        await client.aclose()


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_wrong_admin_passwords_are_limited_per_client(client_from: Callable[[str], httpx.AsyncClient]) -> None:
    guesser, other = client_from("127.0.0.2"), client_from("127.0.0.3")
    for guess in range(ALLOWED):
        response = await guesser.get(REVIEW, headers=basic("admin", f"guess-{guess}"))
        assert response.status_code == 401, response.text
    for headers in (basic("admin", "guess-x"), {"authorization": "Basic !!!"}, basic(*ADMIN)):
        refused = await guesser.get(REVIEW, headers=headers)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "RateLimitExceeded"
        assert 0 < int(refused.headers["retry-after"]) <= 600
    assert (await other.get(REVIEW, headers=basic(*ADMIN))).status_code == 200
    assert (await other.get(REVIEW, headers=basic("admin", "wrong"))).status_code == 401


async def test_malformed_credentials_count_and_no_credentials_do_not(
    client_from: Callable[[str], httpx.AsyncClient],
) -> None:
    guesser = client_from("127.0.0.4")
    for _ in range(ALLOWED + 2):  # a request without credentials is a challenge, not a guess
        assert (await guesser.get(REVIEW)).status_code == 401
    assert (await guesser.get(REVIEW, headers=basic(*ADMIN))).status_code == 200
    for _ in range(ALLOWED):
        assert (await guesser.get(REVIEW, headers={"authorization": "Basic !!!"})).status_code == 401
    assert (await guesser.get(REVIEW, headers=basic(*ADMIN))).status_code == 429


async def test_wrong_upload_tokens_are_limited_per_client(client_from: Callable[[str], httpx.AsyncClient]) -> None:
    guesser = client_from("127.0.0.5")
    body = {"hash": "f" * 64}
    for guess in range(ALLOWED):
        response = await guesser.post(MATCH, json=body, headers={"authorization": f"Bearer guess-{guess}"})
        assert response.status_code == 401, response.text
    refused = await guesser.post(MATCH, json=body, headers={"authorization": f"Bearer {UPLOAD_TOKEN}"})
    assert refused.status_code == 429 and "retry-after" in refused.headers, refused.text
    other = client_from("127.0.0.6")
    assert (await other.post(MATCH, json=body, headers={"authorization": f"Bearer {UPLOAD_TOKEN}"})).status_code == 200
