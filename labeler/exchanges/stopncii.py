"""StopNCII.org's hash API: FetchHashes pages read with python-threatexchange's record types, SubmitFeedback back.

The wire format is pytx's `StopNCIIAPI` (`threatexchange.exchanges.clients.stopncii.api`): every request carries
two keys, the Azure API Management subscription key (`Ocp-Apim-Subscription-Key`) and the function key of the
endpoint it calls (`x-functions-key`: FetchHashes and SubmitFeedback each have their own). `GET <base>/FetchHashes
?startTimestamp=…&pageSize=…[&nextPageToken=…]` answers JSON: `hashRecords`, `hasMoreRecords`, `nextPageToken` (a
cursor, "not valid over long periods of time") and `nextSetTimestamp` (where pytx restarts the next fetch). A record
is the current state of one hash, keyed by its signal type and value: seeing it again replaces what we had, and its
aggregate `hashStatus` Withdrawn or Deleted removes it. (pytx's impl compares `hashValue` with those statuses, which
never matches; we read `hashStatus`.) Records are read with pytx's dataclasses through dacite, as pytx does, one by
one, so a record it cannot read is logged and skipped rather than losing its page.

Where we differ from pytx, and why:
- pytx checkpoints `nextSetTimestamp` after every page. Its own test data gives a first page whose `nextSetTimestamp`
  is the *last* page's record time, so resuming from it after an outage mid-set could skip the pages between. We
  keep the set's own cursor (with its `startTimestamp`) for `_TOKEN_VALID_SECONDS`, and as the place a new set
  restarts from, the time of the last record read less a second while the set's records come in time order (the
  set's start otherwise). `nextSetTimestamp` is taken only once a set is read to its end.
- A cursor StopNCII refuses (it expired) restarts a set from there, which re-applying makes harmless.
- A page that is not readable JSON (HMA issue #2004: StopNCII answered one corrupt page for days, and pytx retried it
  for ever) is read again one record per page from the last good place, so every readable record before the bad one
  is kept; a one-record page that is still unreadable is skipped by moving the restart time on by 1, 2, 4, … seconds
  (at most `_MAX_SKIPS` times a fetch, never past now), each skip logged and counted with the interval it gave up,
  so an operator can see exactly what was lost. An API answering nothing but corrupt pages therefore costs at most
  a minute of changes per fetch, not the whole feed.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import dacite
import httpx
from threatexchange.exchanges.clients.stopncii import api

from labeler.exchanges.credentials import Credentials
from labeler.exchanges.errors import ExchangeError, ExchangeUnavailable, MalformedPage
from labeler.exchanges.http import accepted, send
from labeler.exchanges.paging import Followed
from labeler.exchanges.store import ExchangeUpdate
from labeler.exchanges.types import CredentialField, ExchangeType, FeedbackCall, Fetching, Page
from labeler.pipeline.signals import MD5, PDQ

log = logging.getLogger(__name__)

_PAGE_SIZE: Final = 800  # pytx's
_MAX_PAGE_BYTES: Final = 32 * 1024 * 1024
_MAX_HASH_CHARS: Final = 256  # far beyond any hash StopNCII carries; a longer value is a malformed record
_MAX_TOKEN_CHARS: Final = 8192  # a page token is kept in the checkpoint: a longer one is a malformed page
_TOKEN_VALID_SECONDS: Final = 15 * 60  # pytx: "not valid over long periods of time"; an older one restarts the set
_MAX_SKIPS: Final = 6  # per fetch: 1 + 2 + … + 32 = 63 seconds of changes at most
_SIGNALS: Final = {api.StopNCIISignalType.ImagePDQ: PDQ, api.StopNCIISignalType.VideoMD5: MD5}
_GONE: Final = (api.StopNCIICaseStatus.Withdrawn, api.StopNCIICaseStatus.Deleted)
_VERDICTS: Final = {True: api.StopNCIICSPFeedbackValue.Blocked, False: api.StopNCIICSPFeedbackValue.NotBlocked}
_DACITE: Final = dacite.Config(cast=[enum.Enum, set])  # pytx's
_KEYS_HINT: Final = (
    "check the subscription key and the function keys given to `labeler exchange add`, and that StopNCII.org has "
    "enabled them for this endpoint"
)


class TokenRefused(Exception):
    """StopNCII refused a page token (it expired)."""


class StopNciiClient:
    """Requests to one StopNCII API base URL with one partner's keys."""

    def __init__(self, base_url: str, credentials: Credentials, http: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self._credentials = credentials
        self._http = http

    def _headers(self, function_key: str) -> dict[str, str]:
        return {"Ocp-Apim-Subscription-Key": self._credentials["subscription_key"], "x-functions-key": function_key}

    async def fetch_hashes(self, start: int, token: str, page_size: int) -> bytes:
        params: dict[str, Any] = {"startTimestamp": start, "pageSize": page_size}
        if token:
            params["nextPageToken"] = token
        url = f"{self.base_url}/{api.StopNCIIEndpoint.FetchHashes.value}"
        headers = self._headers(self._credentials["fetch_key"])
        status, body = await send(
            self._http, "GET", url, who="StopNCII", max_bytes=_MAX_PAGE_BYTES, headers=headers, params=params
        )
        if status == 400 and token:
            raise TokenRefused
        return _accepted((status, body), "FetchHashes")

    async def submit_feedback(self, hash_value: str, verdict: api.StopNCIICSPFeedbackValue) -> None:
        key = self._credentials.get("feedback_key")
        if not key:
            raise ExchangeError("this StopNCII exchange has no feedback key: add it again with --feedback-key")
        feedback = api.StopNCIICSPFeedback(verdict).as_dict_for_post() | {"hashValue": hash_value}
        url = f"{self.base_url}/{api.StopNCIIEndpoint.SubmitFeedback.value}"
        payload = {"count": 1, "hashFeedbacks": [feedback]}
        answer = await send(
            self._http, "POST", url, who="StopNCII", max_bytes=64 * 1024, headers=self._headers(key), json=payload
        )
        _accepted(answer, "SubmitFeedback")


@dataclass
class _Cursor:
    """Where the fetch is: the set being read (its `startTimestamp` and page token) and where a new set would
    start (`restart`) if the token is lost, expires or was never there."""

    restart: int
    set_start: int
    token: str = ""
    ordered: bool = True  # the set's records so far came in time order: `restart` follows them
    followed: Followed = field(default_factory=lambda: Followed("StopNCII"))  # the set's page tokens so far

    def __post_init__(self) -> None:
        if self.token:
            self.followed.follow(self.token)

    @classmethod
    def resume(cls, checkpoint: dict[str, Any] | None, now: float) -> _Cursor:
        checkpoint = checkpoint or {}
        restart = int(checkpoint.get("update_time", api.StopNCIIAPI.DEFAULT_START_TIME))
        token = str(checkpoint.get("next") or "")
        if token and now - float(checkpoint.get("paged_at", 0)) <= _TOKEN_VALID_SECONDS:
            set_start = int(checkpoint.get("set_start", restart))
            return cls(restart, set_start, token, bool(checkpoint.get("ordered", False)))
        return cls(restart, restart)

    def fresh(self) -> None:
        """Start a new set at `restart`."""
        self.set_start, self.token, self.ordered = self.restart, "", True
        self.followed = Followed("StopNCII")  # a set read again may be given the same tokens again

    def advance(self, page: api.FetchHashesResponse, now: float) -> dict[str, Any]:
        """Move past `page`; the checkpoint that resumes after it."""
        times = [r.lastModtimestamp for r in page.hashRecords]
        if self.ordered and times == sorted(times) and (not times or times[0] >= self.restart):
            self.restart = max(self.restart, min(times[-1] - 1, int(now)) if times else self.restart)
        else:
            self.ordered, self.restart = False, self.set_start
        if not page.hasMoreRecords:
            self.restart = max(self.set_start, min(page.nextSetTimestamp, int(now)))
            self.fresh()
            return {"update_time": self.restart}
        self.token = self.followed.follow(page.nextPageToken or "")
        return {
            "update_time": self.restart, "set_start": self.set_start, "next": self.token, "paged_at": now,
            "ordered": self.ordered,
        }  # fmt: skip


async def pages(
    client: StopNciiClient, checkpoint: dict[str, Any] | None, *, clock: Callable[[], float] = time.time
) -> AsyncGenerator[Page]:
    """The pages still to fetch after `checkpoint`, each with the checkpoint that follows it. Auth failures and
    outages raise (the caller's checkpoint stays at the last applied page)."""
    cursor = _Cursor.resume(checkpoint, clock())
    issued_here = False  # whether the token in hand came from this fetch (not from the checkpoint)
    narrowed = 0  # one-record pages still to read after a malformed page
    narrowed_from: int | None = None  # the restart time the last narrowing began at
    skips = 0
    while True:
        try:
            body = await client.fetch_hashes(cursor.set_start, cursor.token, 1 if narrowed else _PAGE_SIZE)
        except TokenRefused:
            if issued_here:
                raise ExchangeError("StopNCII refused the page token it had just given; will retry") from None
            log.info("StopNCII refused the saved page token; restarting from %s", _date(cursor.restart))
            cursor.fresh()
            continue
        try:
            page = parse_page(body)
        except MalformedPage as exc:
            if not narrowed:
                if narrowed_from == cursor.restart:  # the one-record pages since then did not move the restart time
                    raise ExchangeUnavailable(f"StopNCII answered a malformed page again ({exc}); will retry") from None
                log.warning("malformed StopNCII page (%s); one record a page from %s", exc, _date(cursor.restart))
                narrowed, narrowed_from = _PAGE_SIZE, cursor.restart
                cursor.fresh()
                continue
            if skips == _MAX_SKIPS or cursor.restart + 2**skips > clock():
                raise ExchangeUnavailable(
                    f"StopNCII keeps answering malformed pages from {_date(cursor.restart)} ({exc}); will retry"
                ) from None
            skipped_from, cursor.restart = cursor.restart, cursor.restart + 2**skips
            skips += 1
            cursor.fresh()
            problem = f"skipped StopNCII's changes from {_date(skipped_from)} to {_date(cursor.restart)}: {exc}"
            yield Page([], {"update_time": cursor.restart}, False, problem)
            continue
        narrowed = max(0, narrowed - 1)
        following = cursor.advance(page, clock())
        issued_here = bool(cursor.token)
        yield Page(updates_of(page), following, not page.hasMoreRecords)
        if not page.hasMoreRecords:
            return


class StopNciiType(ExchangeType):
    name = "stopncii"
    signal_types = (PDQ, MD5)
    credentials = (
        CredentialField("subscription_key"),
        CredentialField("fetch_key"),
        CredentialField("feedback_key", required=False, for_feedback=True),
    )
    has_feedback = True

    def options(self, given: Mapping[str, str | None]) -> dict[str, Any]:
        return {"url": given.get("url") or api.StopNCIIAPI.BASE_URL}

    def pages(self, fetch: Fetching) -> AsyncGenerator[Page]:
        client = StopNciiClient(fetch.options["url"], fetch.credentials, fetch.http)
        return pages(client, fetch.checkpoint, clock=fetch.clock)

    async def send_feedback(self, call: FeedbackCall) -> None:
        """Confirmed: `Blocked` (pytx's positive opinion); rejected: `NotBlocked` (its negative one), for the hash
        as StopNCII sent it (the remote id's value). No tags: a moderator's note stays here."""
        client = StopNciiClient(call.options["url"], call.credentials, call.http)
        _, _, hash_value = call.remote_id.partition(":")
        await client.submit_feedback(hash_value or call.value, _VERDICTS[call.confirmed])


TYPE: Final = StopNciiType()


def parse_page(body: bytes) -> api.FetchHashesResponse:
    """A FetchHashes page with the records pytx's types can read; the others are logged and left out."""
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise MalformedPage(f"not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("hashRecords", []), list):
        raise MalformedPage("not a FetchHashes answer")
    try:
        page = dacite.from_dict(api.FetchHashesResponse, document | {"hashRecords": []}, config=_DACITE)
    except (ValueError, dacite.DaciteError) as exc:
        raise MalformedPage(f"unreadable paging fields: {type(exc).__name__}") from None
    if page.hasMoreRecords and not page.nextPageToken:
        raise MalformedPage("more records but no nextPageToken")
    if len(page.nextPageToken or "") > _MAX_TOKEN_CHARS:
        raise MalformedPage(f"a nextPageToken longer than {_MAX_TOKEN_CHARS} characters")
    page.hashRecords = [r for r in map(_record, document.get("hashRecords", [])) if r is not None]
    return page


def _record(raw: object) -> api.StopNCIIHashRecord | None:
    if isinstance(raw, dict) and raw.get("caseNumbers") == []:
        raw = raw | {"caseNumbers": {}}  # some answers send an empty mapping as a list (pytx reads them too)
    try:
        if not isinstance(raw, dict):
            raise TypeError("not an object")
        record = dacite.from_dict(api.StopNCIIHashRecord, raw, config=_DACITE)
        if not 0 < len(record.hashValue) <= _MAX_HASH_CHARS:
            raise ValueError("hashValue out of bounds")
    except (ValueError, TypeError, dacite.DaciteError) as exc:
        log.warning("skipped a StopNCII record pytx cannot read: %s", type(exc).__name__)
        return None
    return record


def updates_of(page: api.FetchHashesResponse) -> list[ExchangeUpdate]:
    """The page's records of signal types a bank can hold, by remote id `<signalType>:<hashValue>`."""
    return [
        ExchangeUpdate(
            f"{r.signalType.value}:{r.hashValue}", r.hashStatus in _GONE, {_SIGNALS[r.signalType]: r.hashValue}
        )
        for r in page.hashRecords
        if r.signalType in _SIGNALS
    ]


def _accepted(answer: tuple[int, bytes], endpoint: str) -> bytes:
    return accepted(answer, who="StopNCII", asked=endpoint, refused=(401, 403), refusal="the keys", fix=_KEYS_HINT)


def _date(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
