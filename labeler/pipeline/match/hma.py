"""The HMA matcher: Meta's Hasher-Matcher-Actioner 2.0 over its REST API (hma.md §1.3–1.4, HMA 1.1.7).

Lookups use `GET /m/lookup?signal_type=pdq&signal=<hex>`, which applies HMA's own filtering (disabled content,
bank enable ratios) and answers `{"BANK": [{"bank_content_id": 1, "distance": "6"}]}`; distances arrive as
strings. Readiness is `GET /status` (200 `I-AM-ALIVE`; 503 while the index cache is not loaded or stale).
The bank helpers back the `labeler bank` CLI proxy and surface HMA's `{"message": …}` texts unchanged.

Every httpx error is translated here: callers only ever see MatcherUnavailable or MatcherError.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from labeler.pipeline.match.base import (
    DEFAULT_MAX_DISTANCE,
    Match,
    MatcherError,
    MatcherUnavailable,
    sort_matches,
)
from labeler.pipeline.signals import PDQ
from labeler.pipeline.signals.vpdq import VpdqFeature

DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class HmaBank:
    """A bank as HMA lists it; a ratio of 0 means lookups never return its matches."""

    name: str
    matching_enabled_ratio: float


class HmaMatcher:
    """`Matcher` over HMA's REST API, plus the few curation calls the bank CLI needs."""

    signal_types = frozenset({PDQ})

    def __init__(
        self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT, client: httpx.AsyncClient | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout)

    async def lookup(self, pdq_hex: str, *, max_distance: int = DEFAULT_MAX_DISTANCE) -> list[Match]:
        """Bank matches within `max_distance` (HMA's own threshold is 31; tighter ones are applied here)."""
        body = await self._request("GET", "/m/lookup", params={"signal_type": "pdq", "signal": pdq_hex})
        return sort_matches(m for m in _parse_lookup(body) if m.distance <= max_distance)

    async def lookup_exact(self, signal_type: str, value: str) -> list[Match]:
        raise MatcherError(f"HMA lookups of {signal_type} hashes are not supported")

    async def lookup_vpdq(self, features: Sequence[VpdqFeature]) -> list[Match]:
        raise MatcherError("HMA lookups of vPDQ hashes are not supported")

    async def ready(self) -> bool:
        """True when `/status` says I-AM-ALIVE, i.e. the matcher's index is loaded and fresh."""
        try:
            response = await self._client.get(self.base_url + "/status", timeout=self._timeout)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def list_banks(self) -> list[HmaBank]:
        body = await self._request("GET", "/c/banks")
        if not isinstance(body, list):
            raise MatcherError(f"HMA /c/banks: expected a list, got {_short(body)}")
        return [_parse_bank(item) for item in body]

    async def create_bank(self, name: str, *, enabled_ratio: float = 1.0) -> HmaBank:
        """Create a bank (names are UPPER_WITH_UNDERSCORE; HMA answers 403 if it exists)."""
        body = await self._request("POST", "/c/banks", json={"name": name, "enabled_ratio": enabled_ratio})
        return _parse_bank(body)

    async def delete_bank(self, name: str) -> None:
        """Delete a bank and its content (HMA answers 200 even when there is no such bank)."""
        await self._request("DELETE", f"/c/bank/{quote(name, safe='')}")

    async def add_signal(self, bank: str, pdq_hex: str, *, note: str | None = None) -> int:
        """Add one PDQ hash to `bank` as a new content item; returns HMA's bank_content_id.

        HMA makes it matchable only after its next index build and cache refresh (seconds to minutes).
        """
        payload: dict[str, Any] = {"pdq": pdq_hex}
        if note is not None:
            payload["note"] = note
        body = await self._request("POST", f"/c/bank/{quote(bank, safe='')}/signal", json=payload)
        if not isinstance(body, dict) or not isinstance(body.get("id"), int):
            raise MatcherError(f"HMA add signal: unexpected answer {_short(body)}")
        return int(body["id"])

    async def _request(self, method: str, path: str, *, params: dict[str, str] | None = None, json: Any = None) -> Any:
        """One call; returns the decoded JSON or raises MatcherUnavailable / MatcherError."""
        url = self.base_url + path
        try:
            response = await self._client.request(method, url, params=params, json=json, timeout=self._timeout)
        except httpx.TimeoutException as e:
            raise MatcherUnavailable(f"HMA {method} {path}: timed out ({type(e).__name__})") from e
        except httpx.TransportError as e:
            raise MatcherUnavailable(f"HMA {method} {path}: {type(e).__name__}: {e}") from e
        except httpx.HTTPError as e:  # e.g. an invalid URL: configuration, not availability
            raise MatcherError(f"HMA {method} {path}: {type(e).__name__}: {e}") from e
        status = response.status_code
        if status >= 300:
            text = f"HMA {method} {path}: {status} {_error_message(response)}"
            # 5xx covers 503 "index not yet ready" and HMA's 500s when its database is unreachable.
            if status >= 500 or status == 429:
                raise MatcherUnavailable(text, status=status)
            raise MatcherError(text, status=status)
        try:
            return response.json()
        except ValueError as e:
            raise MatcherError(f"HMA {method} {path}: {status} but not JSON: {response.text[:200]!r}") from e


def _parse_lookup(body: Any) -> list[Match]:
    """`{"BANK": [{"bank_content_id": 1, "distance": "6"}, …], …}` → matches; `{}` means none."""
    if not isinstance(body, dict):
        raise MatcherError(f"HMA /m/lookup: expected an object, got {_short(body)}")
    matches = []
    try:
        for bank, hits in body.items():
            for hit in hits:
                matches.append(Match(str(bank), str(hit["bank_content_id"]), _distance(hit["distance"])))
    except (TypeError, KeyError, ValueError) as e:
        raise MatcherError(f"HMA /m/lookup: unexpected answer {_short(body)}") from e
    return matches


def _distance(value: Any) -> int:
    # HMA 1.1.7 sends "6"; an index returning floats would send "6.0".
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"distance {value!r} is not a whole number")
    return int(number)


def _parse_bank(item: Any) -> HmaBank:
    try:
        return HmaBank(str(item["name"]), float(item["matching_enabled_ratio"]))
    except (TypeError, KeyError, ValueError) as e:
        raise MatcherError(f"HMA bank: unexpected answer {_short(item)}") from e


def _error_message(response: httpx.Response) -> str:
    """HMA's `{"message": …}`, a 422's pydantic error list, or the start of a text/HTML body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])
    if isinstance(body, list):  # 422: [{"loc": […], "msg": …}, …]
        parts = [f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg')}" for e in body if isinstance(e, dict)]
        return "; ".join(parts) or _short(body)
    return _short(body)


def _short(value: Any) -> str:
    return repr(value)[:200]
