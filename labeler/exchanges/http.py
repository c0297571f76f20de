"""One request to an exchange, with the rules every exchange type shares: the body is read up to a bound (an
exchange is a remote party like any other), an overloaded or failing exchange (429, 5xx) and an unreachable one are
outages the next fetch resumes after, and an address the outbound rules refuse is named with the setting that
allows it. Which statuses refuse our credentials differs between exchanges and calls, so `accepted` is told."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import httpx

from labeler.exchanges.errors import ExchangeAuthError, ExchangeError, ExchangeUnavailable
from labeler.outbound import RefusedAddress


async def send(
    http: httpx.AsyncClient, method: str, url: str, *, who: str, max_bytes: int, **request: Any
) -> tuple[int, bytes]:
    """The status and body of one request to exchange `who` (its name in messages); `request` goes to httpx
    (`auth`, `headers`, `params`, `data`). Never returns a 429 or 5xx: those raise ExchangeUnavailable."""
    try:
        async with http.stream(method, url, **request) as response:
            status = response.status_code
            if status == 429 or status >= 500:
                raise ExchangeUnavailable(f"{who} answered HTTP {status}; will resume")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise ExchangeUnavailable(f"{who} answered more than {max_bytes} bytes")
            return status, bytes(body)
    except RefusedAddress as exc:
        raise ExchangeError(f"{exc} (LABELER_ALLOW_PRIVATE_FETCH allows it, for tests)") from None
    except httpx.HTTPError as exc:
        raise ExchangeUnavailable(f"{who} unreachable: {type(exc).__name__}; will resume") from None


def accepted(
    answer: tuple[int, bytes], *, who: str, asked: str, refused: Collection[int], refusal: str, fix: str
) -> bytes:
    """The body of a 2xx answer to `asked` (what was asked, for messages); a status in `refused` is an auth error
    ("`who` refused `refusal`", then how to `fix` it), any other an ExchangeError."""
    status, body = answer
    if status in refused:
        raise ExchangeAuthError(f"{who} refused {refusal} (HTTP {status}): {fix}")
    if not 200 <= status < 300:
        raise ExchangeError(f"{who} answered HTTP {status} for {asked}")
    return body
