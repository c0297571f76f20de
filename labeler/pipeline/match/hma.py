"""The HMA matcher: Meta's Hasher-Matcher-Actioner 2.0 over its REST API (hma.md §1.3–1.4, HMA 1.1.7).

Lookups use `GET /m/lookup?signal_type=<pdq|video_md5>&signal=<hash>`, which applies HMA's own filtering
(disabled content, bank enable ratios) and answers `{"BANK": [{"bank_content_id": 1, "distance": "6"}]}`;
distances arrive as strings, and as `"-"` for exact types. Our `md5` is HMA's `video_md5` (an MD5 of the bytes).
HMA's lookups carry no metadata, so the external id and note of each match are read from its content
(`GET /c/bank/<B>/content/<id>`), where we store them as a JSON note (see `encode_note`).
Readiness is `GET /status` (200 `I-AM-ALIVE`; 503 while the index cache is not loaded or stale).

HMA #1318: a PDQ index holding exactly one hash never matches once HMA has stored and reloaded it. Before any
hash of ours goes in, a reserved bank with matching disabled (`FILLER_BANK`) gets one hash that matches nothing
real, so the index never holds exactly one; its matches are never reported.

Every httpx error is translated here: callers only ever see MatcherUnavailable or MatcherError.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final
from urllib.parse import quote

import httpx

from labeler.pipeline.match.base import (
    DEFAULT_MAX_DISTANCE,
    Match,
    MatcherError,
    MatcherUnavailable,
    MatchFailure,
    sort_matches,
)
from labeler.pipeline.signals import MD5, PDQ
from labeler.pipeline.signals.vpdq import VpdqFeature

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
#: Our signal type → HMA's name for it.
HMA_SIGNAL_TYPES: Final = {PDQ: "pdq", MD5: "video_md5"}
#: The reserved bank that keeps HMA's PDQ index from holding exactly one hash (HMA #1318). Its matching is
#: disabled (ratio 0) and its one hash, all zero bits, is ~128 bits from any real PDQ hash (half the bits are set).
FILLER_BANK: Final = "LABELER_RESERVED_INDEX_FILLER"
FILLER_PDQ: Final = "0" * 64
MAX_NOTE: Final = 255  # HMA's limit on a content note


@dataclass(frozen=True, slots=True)
class HmaBank:
    """A bank as HMA lists it; a ratio of 0 means lookups never return its matches."""

    name: str
    matching_enabled_ratio: float


@dataclass(frozen=True, slots=True)
class HmaStatus:
    """What HMA says about itself: `/status` text, its banks and its stored index sizes per signal type."""

    status: str  # I-AM-ALIVE, INDEX-NOT-LOADED, INDEX-STALE or an HTTP error
    ready: bool
    banks: list[HmaBank] | None = None  # None without the curator role
    index_sizes: dict[str, int] = field(default_factory=dict)  # HMA signal type → hashes in its stored index


class HmaMatcher:
    """`Matcher` over HMA's REST API, plus the few curation calls the bank CLI needs."""

    signal_types = frozenset(HMA_SIGNAL_TYPES)

    def __init__(
        self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT, client: httpx.AsyncClient | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout)
        self._filler_checked = False
        self._filler_tried = False
        self._filler_lock = asyncio.Lock()

    async def lookup(self, pdq_hex: str, *, max_distance: int = DEFAULT_MAX_DISTANCE) -> list[Match]:
        """Bank matches within `max_distance` (HMA's own threshold is 31; tighter ones are applied here)."""
        await self._check_filler_once()
        body = await self._request("GET", "/m/lookup", params={"signal_type": "pdq", "signal": pdq_hex})
        return await self._with_metadata([m for m in _parse_lookup(body, PDQ) if m.distance <= max_distance])

    async def lookup_exact(self, signal_type: str, value: str) -> list[Match]:
        """Entries holding exactly `value`; of the exact types HMA knows only MD5 (as `video_md5`)."""
        if signal_type not in HMA_SIGNAL_TYPES or signal_type == PDQ:
            raise MatcherError(f"HMA lookups of {signal_type} hashes are not supported")
        params = {"signal_type": HMA_SIGNAL_TYPES[signal_type], "signal": value}
        await self._check_filler_once()
        body = await self._request("GET", "/m/lookup", params=params)
        return await self._with_metadata(_parse_lookup(body, signal_type))

    async def lookup_vpdq(self, features: Sequence[VpdqFeature]) -> list[Match]:
        raise MatcherError("HMA lookups of vPDQ hashes are not supported")

    async def ready(self) -> bool:
        """True when `/status` says I-AM-ALIVE, i.e. the matcher's index is loaded and fresh."""
        try:
            response = await self._client.get(self.base_url + "/status", timeout=self._timeout)
        except httpx.HTTPError:
            return False
        if response.status_code != 200:
            return False
        await self._check_filler_once()
        return True

    async def _check_filler_once(self) -> None:
        """Before the first lookup or readiness answer, make sure of the filler, so hashes someone else banks in
        HMA are not missed either (HMA #1318); an HMA without the curator role is only warned about."""
        if self._filler_checked or self._filler_tried:
            return
        async with self._filler_lock:  # lookups made meanwhile wait: before the filler they could miss (#1318)
            if self._filler_checked or self._filler_tried:
                return
            try:
                await self.ensure_filler()
            except MatchFailure as e:
                log.warning("HMA: cannot check the reserved filler bank %s (HMA #1318): %s", FILLER_BANK, e)
            finally:
                self._filler_tried = True  # one try: a matcher-only HMA would fail every time

    async def status(self) -> HmaStatus:
        """HMA's readiness, banks and stored index sizes; MatcherUnavailable when it cannot be reached."""
        try:
            response = await self._client.get(self.base_url + "/status", timeout=self._timeout)
        except httpx.HTTPError as e:
            raise MatcherUnavailable(f"HMA GET /status: {type(e).__name__}: {e}") from e
        text = response.text.strip()[:100] or f"HTTP {response.status_code}"
        if response.status_code != 200:
            return HmaStatus(text, False)
        banks: list[HmaBank] | None
        try:
            banks = await self.list_banks()
        except MatcherError:  # no curator role on this instance
            banks = None
        body = await self._request("GET", "/m/index/status")
        try:
            sizes = {str(name): int(info["size"]) for name, info in body.items()}
        except (AttributeError, TypeError, KeyError, ValueError) as e:
            raise MatcherError(f"HMA /m/index/status: unexpected answer {_short(body)}") from e
        return HmaStatus(text, True, banks, sizes)

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

    async def add_signal(
        self,
        bank: str,
        value: str,
        *,
        signal_type: str = PDQ,
        note: str | None = None,
        external_id: str | None = None,
    ) -> int:
        """Add one hash to `bank` as a new content item; returns HMA's bank_content_id.

        HMA makes it matchable only after its next index build and cache refresh (seconds to minutes). The
        reserved filler goes in first (HMA #1318). `external_id` and `note` are kept in HMA's note (`encode_note`).
        """
        if signal_type not in HMA_SIGNAL_TYPES:
            raise MatcherError(f"HMA banks do not take {signal_type} hashes")
        if not self._filler_checked:
            await self.ensure_filler()
        payload: dict[str, Any] = {HMA_SIGNAL_TYPES[signal_type]: value}
        text = encode_note(external_id, note)
        if text is not None:
            payload["note"] = text
        return await self._add(bank, payload)

    async def delete_content(self, bank: str, content_id: int) -> bool:
        """Delete one content item; False when there was none (HMA answers `{"deleted": 0}`)."""
        body = await self._request("DELETE", f"/c/bank/{quote(bank, safe='')}/content/{content_id}")
        return isinstance(body, dict) and body.get("deleted") == 1

    async def content(self, bank: str, content_id: int) -> dict[str, Any]:
        """HMA's record of one content item, with its signals (`GET /c/bank/<B>/content/<id>`)."""
        path = f"/c/bank/{quote(bank, safe='')}/content/{content_id}"
        body = await self._request("GET", path, params={"include_signals": "true"})
        if not isinstance(body, dict):
            raise MatcherError(f"HMA content: unexpected answer {_short(body)}")
        return body

    async def ensure_filler(self) -> None:
        """Make sure HMA's PDQ index can never hold exactly one hash of ours (HMA #1318; see the module doc).

        Creates `FILLER_BANK` with matching disabled and adds `FILLER_PDQ` to it when the bank is missing.
        """
        if FILLER_BANK not in {b.name for b in await self.list_banks()}:
            try:
                await self.create_bank(FILLER_BANK, enabled_ratio=0.0)
            except MatcherError as e:
                if e.status != 403:  # 403: another process made it meanwhile, and fills it
                    raise
            else:
                note = "kept by atproto-hma-labeler: HMA never matches an index of one hash (HMA #1318)"
                await self._add(FILLER_BANK, {"pdq": FILLER_PDQ, "note": note})
                log.info("HMA: added the reserved filler bank %s (HMA #1318)", FILLER_BANK)
        self._filler_checked = True

    async def _add(self, bank: str, payload: dict[str, Any]) -> int:
        body = await self._request("POST", f"/c/bank/{quote(bank, safe='')}/signal", json=payload)
        if not isinstance(body, dict) or not isinstance(body.get("id"), int):
            raise MatcherError(f"HMA add signal: unexpected answer {_short(body)}")
        return int(body["id"])

    async def _with_metadata(self, matches: list[Match]) -> list[Match]:
        """Matches with the external id and note from their content's note; the reserved filler dropped.

        Reading them is best effort: a match whose content cannot be read (deleted meanwhile) keeps neither.
        """
        matches = [m for m in matches if m.bank != FILLER_BANK]

        async def one(m: Match) -> Match:
            try:
                record = await self.content(m.bank, int(m.entry_id))
            except MatchFailure as e:
                log.debug("HMA content %s/%s unreadable: %s", m.bank, m.entry_id, e)
                return m
            external_id, note = decode_note(record.get("note"))
            return replace(m, external_id=external_id, note=note)

        return sort_matches(await asyncio.gather(*(one(m) for m in matches)))

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


def encode_note(external_id: str | None, note: str | None) -> str | None:
    """HMA content has a note (≤ 255 characters) and no external id: both go in as a JSON object.

    The note is shortened to fit; an external id that cannot fit is a MatcherError (HMA would lose it).
    """
    if external_id is None and note is None:
        return None
    fields: dict[str, str] = {"external_id": external_id} if external_id is not None else {}
    text = json.dumps({**fields, "note": ""} if note is not None else fields, ensure_ascii=False)
    if len(text) > MAX_NOTE:
        raise MatcherError(f"external id too long for HMA's {MAX_NOTE}-character note")
    if note is None:
        return text
    lo, hi = 0, len(note)  # the longest prefix of the note that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(json.dumps({**fields, "note": note[:mid]}, ensure_ascii=False)) <= MAX_NOTE:
            lo = mid
        else:
            hi = mid - 1
    return json.dumps({**fields, "note": note[:lo]}, ensure_ascii=False)


def decode_note(text: Any) -> tuple[str | None, str | None]:
    """(external id, note) from a content note: ours is JSON (`encode_note`); anyone else's is the note."""
    if not isinstance(text, str) or not text:
        return None, None
    try:
        data = json.loads(text)
    except ValueError:
        return None, text
    if not isinstance(data, dict) or not set(data) <= {"external_id", "note"}:
        return None, text
    ext, note = data.get("external_id"), data.get("note")
    return (ext if isinstance(ext, str) else None), (note if isinstance(note, str) and note else None)


def _parse_lookup(body: Any, signal_type: str) -> list[Match]:
    """`{"BANK": [{"bank_content_id": 1, "distance": "6"}, …], …}` → matches; `{}` means none."""
    if not isinstance(body, dict):
        raise MatcherError(f"HMA /m/lookup: expected an object, got {_short(body)}")
    matches = []
    try:
        for bank, hits in body.items():
            for hit in hits:
                distance = _distance(hit["distance"])
                matches.append(Match(str(bank), str(hit["bank_content_id"]), distance, signal_type=signal_type))
    except (TypeError, KeyError, ValueError) as e:
        raise MatcherError(f"HMA /m/lookup: unexpected answer {_short(body)}") from e
    return matches


def _distance(value: Any) -> int:
    # HMA 1.1.7 sends "6"; an index returning floats would send "6.0"; an exact type's index sends "-".
    if value == "-":
        return 0
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
