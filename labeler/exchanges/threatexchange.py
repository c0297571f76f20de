"""Meta's ThreatExchange: one privacy group's `threat_updates`, read with python-threatexchange's record types.

GIFCT's hash-sharing database is a privacy group on ThreatExchange too, so this type serves both. The wire format
is pytx's `ThreatExchangeAPI.get_threat_updates` as its `FBThreatExchangeSignalExchangeAPI` drives it: the Graph
API (`https://graph.facebook.com/<version>`), the app token (`appid|secret`) as the `access_token` query parameter,
GET `/<privacy group>/threat_updates/` with `start_time`, `limit`, `fields` and `types`, answered with JSON
`{"data": [...], "paging": {"next": URL}}`: each record an indicator (`id`, `indicator`, `type`, `last_updated`,
`should_delete`, and its `descriptors`: one per member app that shared it, with owner, status, tags, reactions).
A record is read by pytx's `ThreatUpdateJSON` and `FBThreatExchangeIndicatorRecord`, and pytx's own mapping of
indicator types to signal types decides what it carries: `HASH_PDQ` is PDQ, `HASH_VIDEO_MD5` and `HASH_MD5`
tagged `media_type_video` are MD5, and likewise `HASH_VIDEO_SHA256` and tagged `HASH_SHA256` are SHA-256; other
types (URLs, other file hashes) are not asked for.

The remote id is the indicator's id, which tombstones (`should_delete`, or no visible descriptor) carry too; the
descriptors, which feedback reactions act on, are looked up when it is sent (`threatexchange_feedback`), so nothing
beyond the id has to be kept. As in pytx, the checkpoint is the highest `last_updated` applied
(`update_time`): records are ordered by it, so a fetch resumes with `start_time` there (re-reading the records of
that second, which re-applying makes harmless) rather than keeping a paging link, which would carry the token.

A page that cannot be read (not JSON, or its `data` not a list) stops the fetch, and the next fetches read it again
from the checkpoint. Once it has stayed unreadable for `fetch.UNREADABLE_TRIES` fetches, the fetch reads on one
record a page (`limit=1`, for up to `_NARROWED` records) until a one-record page is unreadable too, then skips it as
StopNCII's is skipped: Graph's cursors are opaque, so the start time moves on past the last record read by 1, 2, 4,
… seconds (at most `_MAX_SKIPS` times a fetch, never past now) until a page reads again, each skip logged and
counted with the interval it gave up.

Graph's `next` links are absolute URLs; one is followed only to the configured host and the same path
(`GraphClient.next_page`), with our token put back in place of the one it carries, so a bad answer cannot send the
token or us anywhere else. Errors come as `{"error": {"code": …, "type": …}}`, mostly with HTTP 400: code 190 (an
invalid or expired token) and permission codes are auth failures, transient and rate-limit codes outages.
ThreatExchange keeps tombstones for 90 days, so a checkpoint older than pytx's 85 days is dropped and the group
read again from the start.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Final, cast

import httpx
from threatexchange.exchanges.clients.fb_threatexchange.api import ThreatExchangeAPI, is_valid_app_token
from threatexchange.exchanges.clients.fb_threatexchange.threat_updates import ThreatUpdateJSON
from threatexchange.exchanges.impl.fb_threatexchange_api import (
    FBThreatExchangeCollabConfig,
    FBThreatExchangeIndicatorRecord,
    FBThreatExchangeSignalExchangeAPI,
)
from threatexchange.exchanges.impl.fb_threatexchange_signal import HasFbThreatExchangeIndicatorType
from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.signal import PdqSignal
from threatexchange.signal_type.sha256 import VideoSHA256Signal
from threatexchange.signal_type.signal_base import SignalType

from labeler.exchanges.credentials import Credentials
from labeler.exchanges.errors import (
    ExchangeAuthError,
    ExchangeError,
    ExchangeUnavailable,
    MalformedPage,
    UnreadablePage,
)
from labeler.exchanges.http import send
from labeler.exchanges.paging import Followed
from labeler.exchanges.store import ExchangeUpdate
from labeler.exchanges.types import CredentialField, ExchangeType, FeedbackCall, Fetching, Page
from labeler.pipeline.signals import MD5, PDQ, SHA256

log = logging.getLogger(__name__)

BASE_URL: Final = ThreatExchangeAPI._TE_BASE_URL
_PAGE_SIZE: Final = 100  # pytx's fetch_iter asks for as many
_MAX_BODY_BYTES: Final = 16 * 1024 * 1024
_MAX_SKIPS: Final = 6  # per fetch: 1 + 2 + … + 32 = 63 seconds of updates at most
_NARROWED: Final = 1000  # one-record pages read when skipping, before whole pages again
_STALE_SECONDS: Final = 85 * 24 * 3600  # as pytx's FBThreatExchangeCheckpoint.is_stale (which reads the wall clock)
_RESTARTED: Final = (
    "the last fetch was more than 85 days ago, longer than ThreatExchange keeps deletions: reading the privacy group "
    "again from the start (entries deleted meanwhile stay in the bank)"
)
_PYTX_SIGNALS: Final[Mapping[type[SignalType], str]] = {  # pytx's → ours
    PdqSignal: PDQ,
    VideoMD5Signal: MD5,
    VideoSHA256Signal: SHA256,
}
_COLLAB: Final = FBThreatExchangeCollabConfig(name="labeler", privacy_group=0)  # pytx's conversion ignores it
_AUTH_CODES: Final = frozenset({102, 104, 190, 10, 200})  # token missing, invalid or expired; no permission
_TRANSIENT_CODES: Final = frozenset({1, 2, 4, 17, 32, 341, 613})  # unknown/temporary errors, rate limits


def indicator_types() -> list[str]:
    """The ThreatExchange indicator types that carry a signal type we bank, from pytx's signal types."""
    found: list[str] = []
    for signal in _PYTX_SIGNALS:
        declared = cast(type[HasFbThreatExchangeIndicatorType], signal).INDICATOR_TYPE
        found += [declared] if isinstance(declared, str) else list(declared)
    return sorted(set(found))


class GraphClient:
    """Requests to one Graph API base URL with one app's token (sent as `access_token`, never shown)."""

    def __init__(self, base_url: str, credentials: Credentials, http: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = credentials["token"]
        if not is_valid_app_token(self._token):
            raise ExchangeAuthError(
                "the ThreatExchange token is not an app token (`appid|secret`): add the exchange again with the "
                "app's ID and secret from developers.facebook.com"
            )
        self.app_id = ThreatExchangeAPI(self._token).app_id
        self._origin = urllib.parse.urlsplit(self.base_url)[:2]
        self._http = http

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path}"

    def same_origin(self, url: str) -> bool:
        return urllib.parse.urlsplit(url)[:2] == self._origin

    async def request(self, method: str, url: str, params: Mapping[str, str]) -> Any:
        """The JSON answer of one request, our token added to `params`; Graph errors raised as ExchangeErrors."""
        query = {**params, "access_token": self._token}
        status, body = await send(
            self._http, method, url, who="ThreatExchange", max_bytes=_MAX_BODY_BYTES, params=query
        )
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if status == 200 and answer is not None:
            return answer
        if status == 200:  # cut short, or garbled: read again, or skipped (`pages`)
            raise UnreadablePage("ThreatExchange answered HTTP 200 with a body that is not JSON")
        raise self._error(status, answer)

    def next_page(self, answer: Any, path: str) -> dict[str, str] | None:
        """The query of the page after `answer` (a page of `path`, an edge), without the token; None after the
        last. A link to another host or another path is refused: it would take our token there."""
        paging = answer.get("paging") if isinstance(answer, dict) else None
        following = paging.get("next") if isinstance(paging, dict) else None
        if following is None:
            return None
        if not isinstance(following, str):
            raise ExchangeError("ThreatExchange's paging link is not a URL; will retry")
        parts = urllib.parse.urlsplit(following)
        if not self.same_origin(following) or parts.path.rstrip("/") != urllib.parse.urlsplit(path).path.rstrip("/"):
            where = f"{parts.scheme}://{parts.netloc}{parts.path}"
            raise ExchangeError(f"refused ThreatExchange's paging link to {where}: it leaves {path}")
        return {k: v for k, v in urllib.parse.parse_qsl(parts.query) if k != "access_token"}

    def _error(self, status: int, answer: Any) -> ExchangeError:
        error = answer.get("error") if isinstance(answer, dict) else None
        if not isinstance(error, dict):
            return ExchangeError(f"ThreatExchange answered HTTP {status} without a readable body")
        code = error.get("code")
        said = str(error.get("message", ""))[:200]
        for shown in (self._token, urllib.parse.quote(self._token, safe="")):
            said = said.replace(shown, "[token]")
        what = f"ThreatExchange answered HTTP {status} ({error.get('type', 'error')} code {code}: {said})"
        if code in _AUTH_CODES:
            return ExchangeAuthError(
                f"{what}: check the app token given to `labeler exchange add` and that the app is a member of "
                "the privacy group"
            )
        if code in _TRANSIENT_CODES or error.get("is_transient") is True:
            return ExchangeUnavailable(f"{what}; will resume")
        return ExchangeError(what)


async def pages(client: GraphClient, privacy_group: str, fetch: Fetching) -> AsyncGenerator[Page]:
    """The pages of the privacy group's threat updates after `fetch.checkpoint`, each with the checkpoint after it;
    with `fetch.skip_unreadable`, an unreadable one is skipped (see the module docstring)."""
    now = int(fetch.clock())
    previous = fetch.checkpoint or {}
    start = int(previous.get("update_time", 0))
    restarted = bool(start) and now - int(previous.get("last_fetch_time", 0)) > _STALE_SECONDS
    if restarted:
        start = 0
    path = client.url(f"{privacy_group}/threat_updates/")
    narrowed = _NARROWED if fetch.skip_unreadable else 0  # one-record pages still to read
    url, params = path, _first_params(start, one=bool(narrowed))
    highest, skips = start, 0
    followed = Followed("ThreatExchange")
    while True:
        try:
            answer = await client.request("GET", url, params)
            records = answer.get("data") if isinstance(answer, dict) else None
            if not isinstance(records, list):
                raise MalformedPage("not a page of updates (no `data` list)")
        except (MalformedPage, UnreadablePage) as exc:
            since = f"ThreatExchange's page of updates since {highest}"
            if not narrowed:
                raise UnreadablePage(f"{since} is malformed ({exc})") from None
            step = 2**skips
            if skips == _MAX_SKIPS or highest + step > now:
                raise UnreadablePage(f"{since} is still malformed after {skips} skip(s) ({exc})") from None
            skipped_from, highest, skips = highest, highest + step, skips + 1
            problem = f"skipped ThreatExchange's updates from {skipped_from} to {highest}: {exc}"
            yield Page([], {"update_time": highest, "last_fetch_time": now}, False, problem)
            url, params, followed = path, _first_params(highest, one=True), Followed("ThreatExchange")
            continue
        following = client.next_page(answer, path)
        problems = [_RESTARTED] if restarted else []
        restarted = False
        updates, latest, unreadable = parse_records(records, app_id=client.app_id)
        highest = max(highest, min(latest, now))  # a time in the future would skip what comes until then
        if unreadable:
            problems.append(f"skipped {unreadable} ThreatExchange record(s) pytx cannot read")
        checkpoint = {"update_time": highest, "last_fetch_time": now}
        yield Page(updates, checkpoint, following is None, "; ".join(problems) or None)
        if following is None:
            return
        url, params = path, following
        narrowed = 0 if skips else max(0, narrowed - 1)
        if params.get("limit") == "1" and not narrowed:  # past what was skipped: whole pages again, from there
            url, params, followed = path, _first_params(highest), Followed("ThreatExchange")
            continue
        followed.follow(urllib.parse.urlencode(sorted(params.items())))


def parse_records(records: list[Any], *, app_id: int) -> tuple[list[ExchangeUpdate], int, int]:
    """A page's updates, the highest `last_updated` among them and how many records could not be read."""
    updates: list[ExchangeUpdate] = []
    latest, unreadable = 0, 0
    for raw in records:
        try:
            update = ThreatUpdateJSON(raw)
            remote_id, changed = str(update.id), update.time
            updates.append(ExchangeUpdate(remote_id, *_carried(update, app_id)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("skipped a ThreatExchange record pytx cannot read: %s", type(exc).__name__)
            unreadable += 1
            continue
        latest = max(latest, changed)
    return updates, latest, unreadable


def _carried(update: ThreatUpdateJSON, app_id: int) -> tuple[bool, dict[str, str]]:
    """Whether the record is withdrawn, and the hashes it carries by our signal type (pytx's mapping decides)."""
    if update.should_delete:
        return True, {}
    record = FBThreatExchangeIndicatorRecord.from_threatexchange_json(app_id, update)
    if record is None:  # no descriptor visible to us: pytx drops it too
        return True, {}
    fetched = {(update.threat_type, update.indicator): record}
    converted = FBThreatExchangeSignalExchangeAPI.naive_convert_to_signal_type(list(_PYTX_SIGNALS), _COLLAB, fetched)
    return False, {_PYTX_SIGNALS[signal]: value for signal, found in converted.items() for value in found}


def _first_params(start: int, *, one: bool = False) -> dict[str, str]:
    params = {
        "limit": "1" if one else str(_PAGE_SIZE),
        "fields": ",".join(ThreatUpdateJSON.te_threat_updates_fields()),
        "types": ",".join(indicator_types()),
    }
    return params | ({"start_time": str(start)} if start else {})


class ThreatExchangeType(ExchangeType):
    name = "threatexchange"
    signal_types = (PDQ, MD5, SHA256)
    credentials = (CredentialField("token"),)
    option_keys = ("url", "privacy_group")
    has_feedback = True

    def options(self, given: Mapping[str, str | None]) -> dict[str, Any]:
        group = given.get("privacy_group")
        if group is None or not group.isascii() or not group.isdigit() or len(group) > 30:
            raise ExchangeError("threatexchange needs --privacy-group, the numeric ID of the privacy group")
        return {"url": given.get("url") or BASE_URL, "privacy_group": group}

    def pages(self, fetch: Fetching) -> AsyncGenerator[Page]:
        client = GraphClient(fetch.options["url"], fetch.credentials, fetch.http)
        return pages(client, str(fetch.options["privacy_group"]), fetch)

    async def send_feedback(self, call: FeedbackCall) -> None:
        from labeler.exchanges.threatexchange_feedback import send_reactions  # it builds on this module

        await send_reactions(GraphClient(call.options["url"], call.credentials, call.http), call)


TYPE: Final = ThreatExchangeType()
