"""One XRPC call to another service (a PDS's admin API, a moderation service), with its failure sorted into
"try again later" and "this will never work", which is what the outbox needs to know.

    no answer, timeout, 5xx, 429      XrpcUnavailable (retry; 429/503 Retry-After or RateLimit-Reset honoured)
    any other non-2xx                 XrpcRefused (permanent: 401 wrong password, 400 InvalidRequest, …)
    a non-public address              XrpcRefused (with a client on `labeler.outbound.public_transport`)

httpx rather than the atproto SDK's client: the SDK folds statuses into a few exception types and follows
redirects, while an action needs the exact status, the XRPC error name and the server's retry hint, and must
never replay admin credentials somewhere else. Answers are read up to `MAX_RESPONSE_BYTES`.
"""

from __future__ import annotations

import json
import time
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from labeler.outbound import RefusedAddress
from labeler.pipeline.actions.model import Outcome, refused, unavailable

MAX_RESPONSE_BYTES: Final = 64 * 1024
_MAX_RETRY_AFTER: Final = 3600.0


class XrpcFailure(Exception):
    def __init__(self, code: str, detail: str, *, status: int | None = None, error: str = "") -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status
        self.error = error


class XrpcUnavailable(XrpcFailure):
    """The service could not answer now; `retry_after` is its own hint in seconds, when it gave one."""

    def __init__(
        self, code: str, detail: str, *, status: int | None = None, error: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(code, detail, status=status, error=error)
        self.retry_after = retry_after


class XrpcRefused(XrpcFailure):
    """The service refused the request; sending it again would be refused again."""


def outcome_of(failure: XrpcFailure, hint: str = "") -> Outcome:
    detail = failure.detail + (f"; {hint}" if hint and isinstance(failure, XrpcRefused) else "")
    if isinstance(failure, XrpcUnavailable):
        return unavailable(failure.code, detail, failure.retry_after)
    return refused(failure.code, detail)


async def xrpc(
    client: httpx.AsyncClient,
    method: str,
    base_url: str,
    nsid: str,
    *,
    body: dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    auth: httpx.Auth | None = None,
) -> dict[str, Any]:
    """Call `nsid` on `base_url`; the JSON answer (an empty object when there is none), or an XrpcFailure."""
    where = f"{nsid} at {urlsplit(base_url).netloc}"
    request = client.build_request(
        method, f"{base_url.rstrip('/')}/xrpc/{nsid}", json=body, params=params, headers=headers
    )
    try:
        response = await client.send(request, auth=auth, stream=True)
        try:
            data = await _read(response)
        finally:
            await response.aclose()
    except RefusedAddress as exc:  # a client on labeler.outbound's public transport, and a private address
        raise XrpcRefused("private-address", f"{where}: {exc}") from None
    except httpx.TimeoutException as exc:
        raise XrpcUnavailable("timeout", f"{where}: {type(exc).__name__}") from None
    except httpx.HTTPError as exc:
        raise XrpcUnavailable("unreachable", f"{where}: {type(exc).__name__} {exc}".strip()) from None
    answer = _json(data)
    status = response.status_code
    if 200 <= status < 300:
        return answer
    error = str(answer.get("error", ""))[:100]
    message = str(answer.get("message", ""))[:300]
    detail = f"{where} answered HTTP {status}" + (f" {error}" if error else "") + (f": {message}" if message else "")
    if status == 429 or status >= 500:
        raise XrpcUnavailable(f"http-{status}", detail, status=status, error=error, retry_after=_retry_after(response))
    raise XrpcRefused(f"http-{status}", detail, status=status, error=error)


async def _read(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            break
    return bytes(body[:MAX_RESPONSE_BYTES])


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data) if data else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait from `Retry-After` (seconds or a date) or `RateLimit-Reset` (the PDS's epoch seconds)."""
    now = time.time()
    raw = response.headers.get("retry-after")
    reset = response.headers.get("ratelimit-reset")
    try:
        if raw is not None:
            wait = float(raw) if raw.strip().isdigit() else parsedate_to_datetime(raw).timestamp() - now
        elif reset is not None:
            wait = float(reset) - now
        else:
            return None
    except (TypeError, ValueError, OverflowError):
        return None
    return min(max(wait, 0.0), _MAX_RETRY_AFTER)
