"""Altitude's API as the labeler uses it (Jigsaw-Code/altitude `api.yml` and `signal-service/src/api/*.py`).

    POST /targets/   {"content_type": "IMAGE", "content_bytes": <base64>, "title", "description", "client_context"}
                     → 201 {"id", "create_time", …}   400 when the bytes are not an image Pillow can open
    POST /signals/   {"content": {"value", "type": "HASH_PDQ" | "HASH_MD5"}, "source": {"name": "USER_REPORT",
                     "author"}}  → 201 {"id", …}
    POST /cases/     {"signal_ids": [id], "target_id": id}  → 201 {"id", "state", …}
    GET  /cases/{id} → {"id", "state": "ACTIVE" | "RESOLVED", "review_history": [{"id", "create_time",
                     "decision": "BLOCK" | "APPROVE", "user"}]}   404 when there is no such case

A target alone reaches Altitude's moderators only if Altitude's own signals match it, so the hand-off files the
case itself. `GET /targets/{id}` carries no decision: decisions are reviews on the case. A review is a draft for
60 seconds (it can be deleted: "undo") before Altitude publishes it, and the API does not say which; so a decision
counts only once it is `settle_seconds` old. Errors are `{"error": {"code", "message", "status"}}`.

Altitude has no authentication of its own (deployments put a proxy in front): `token`, when configured, is sent as
a bearer token for that proxy. The URL is the operator's, like the webhook's, so private addresses are allowed.
"""

from __future__ import annotations

import base64
import datetime
import json
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import httpx

_MAX_ANSWER: Final = 1 << 20  # bytes of an answer we read, beyond the image echoed back by POST /targets/
_MAX_ID: Final = 200
DECISIONS: Final = ("BLOCK", "APPROVE")


class AltitudeError(Exception):
    """A call to Altitude failed; `code` is stable (`http-503`, `ConnectError`, `bad-answer`), the message says more."""

    retryable: bool = False

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class AltitudeUnavailable(AltitudeError):
    """Worth trying again: Altitude is down, slow, busy (5xx, 429) or answered something unreadable."""

    retryable = True


class AltitudeRefused(AltitudeError):
    """The same request would fail again (a 4xx): the image, our request or our credentials are wrong."""


@dataclass(frozen=True)
class Review:
    decision: str
    user: str | None
    created: datetime.datetime


class AltitudeApi:
    def __init__(self, url: str, token: str | None, *, timeout: float, max_image_bytes: int) -> None:
        self.url = url.rstrip("/")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(timeout=timeout, trust_env=False, follow_redirects=False, headers=headers)
        self._max_target_answer = _MAX_ANSWER + max_image_bytes * 4 // 3 + 4

    async def aclose(self) -> None:
        await self._client.aclose()

    async def create_target(self, image: bytes, *, title: str, description: str, client_context: str) -> str:
        body = {
            "content_type": "IMAGE",
            "content_bytes": base64.b64encode(image).decode(),
            "title": title,
            "description": description,
            "client_context": client_context,
        }
        return _id(await self._call("POST", "/targets/", body, limit=self._max_target_answer))

    async def create_signal(self, signal_type: str, value: str, *, author: str) -> str:
        body = {"content": {"value": value, "type": signal_type}, "source": {"name": "USER_REPORT", "author": author}}
        return _id(await self._call("POST", "/signals/", body))

    async def create_case(self, target_id: str, signal_id: str) -> str:
        return _id(await self._call("POST", "/cases/", {"signal_ids": [signal_id], "target_id": target_id}))

    async def latest_review(self, case_id: str) -> Review | None:
        """The case's latest review (Altitude's decision is the last one), or None while nobody has decided."""
        case = await self._call("GET", f"/cases/{quote(case_id, safe='')}", None)
        history = case.get("review_history") or []
        if not isinstance(history, list):
            raise AltitudeUnavailable("bad-answer", "review_history is not a list")
        if not history:
            return None
        last = history[-1]
        try:
            decision, user = last["decision"], last.get("user")
            created = datetime.datetime.fromisoformat(last["create_time"])
        except (TypeError, KeyError, ValueError, AttributeError):
            raise AltitudeUnavailable("bad-answer", "a review without a decision or time") from None
        if decision not in DECISIONS or not (user is None or isinstance(user, str)):
            raise AltitudeUnavailable("bad-answer", f"an unknown decision {str(decision)[:40]!r}")
        if created.tzinfo is None:  # Altitude writes naive UTC (datetime.utcnow().isoformat())
            created = created.replace(tzinfo=datetime.UTC)
        return Review(decision, user[:200] if user else None, created)

    async def _call(self, method: str, path: str, body: Any, *, limit: int = _MAX_ANSWER) -> dict[str, Any]:
        what = f"{method} {path.split('/')[1]}"
        try:
            async with self._client.stream(method, self.url + path, json=body) as response:
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > limit:
                        raise AltitudeUnavailable("too-large", f"{what}: the answer is over {limit} bytes")
        except httpx.HTTPError as exc:
            raise AltitudeUnavailable(type(exc).__name__, f"{what} failed: {exc}") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise AltitudeUnavailable(f"http-{status}", f"{what}: Altitude answered HTTP {status}")
        if not response.is_success:
            raise AltitudeRefused(f"http-{status}", f"{what}: Altitude refused it: {_message(bytes(data))}")
        try:
            answer = json.loads(data)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise AltitudeUnavailable("bad-answer", f"{what}: the answer is not a JSON object")
        return answer


def _id(answer: dict[str, Any]) -> str:
    value = answer.get("id")
    if not isinstance(value, str) or not value or len(value) > _MAX_ID or not value.isprintable() or "/" in value:
        raise AltitudeUnavailable("bad-answer", "the answer has no usable id")
    return value


def _message(data: bytes) -> str:
    """Altitude's error message (`{"error": {"message"}}`), shortened; the status alone when there is none."""
    try:
        message = json.loads(data)["error"]["message"]
    except (ValueError, TypeError, KeyError):
        return "no message"
    return str(message)[:300]
