"""NCMEC's hash-sharing API (v2): pages of entries between two times, read with python-threatexchange's parser.

The wire format is pytx's `NCMECHashAPI` (`threatexchange.exchanges.clients.ncmec.hash_api`): HTTP basic auth, GET
`<environment>/v2/entries?from=…&to=…` answering XML (`queryResult` with `images` and `videos`, entries and
`deleted…` tombstones, and `paging/next`, a path with `start`, `size` and `max` to append to the environment URL).
Its client sends with `requests` to fixed hosts; ours sends through `labeler.outbound` (public addresses only,
checked after resolving; bounded bodies) with httpx, and hands each entry to pytx's `NCMECEntryUpdate.from_xml`.

Entries are parsed one by one, so an entry pytx cannot read is skipped and logged rather than losing its page. A
page that is not a readable result at all stops the fetch, and the next fetches read it again from the checkpoint;
once it has stayed unreadable for `fetch.UNREADABLE_TRIES` fetches it is skipped: a page by its paging parameters
(`start` + `size`), which `paging/next` carries for every page but the first, and a window's first page by halving
the window until the unreadable part is one second, which is skipped (at most `_MAX_SKIPS` seconds a fetch). As in
pytx's `NCMECCheckpoint`, a window's `next` link is resumed only with the window's own `from`/`to`, and only within
12 hours (NCMEC asks not to keep paging links longer); an older one restarts the window, which re-applying makes
harmless. Entries are not in time order, so a window counts as fetched only once its last page is in.

A first fetch covers the exchange's whole history, millions of entries: one window over all of it could not be
paged through within those 12 hours, and would restart for ever. So windows are sized by what they list (the
`max` of the first page's paging link): a window listing more than `WINDOW_ENTRIES` is narrowed before its pages
are read, a window listing few widens the next, and the checkpoint moves to a window's end once it is read, so
even a long first fetch makes lasting progress. (pytx's `NCMECSignalExchangeAPI.fetch_iter` adapts its windows
for the same reason; this sizes them from the count the first page states.) Each narrowing at least halves the
window, down to one second, pytx's floor too; a one-second window that still lists more is not paged through, as
pytx would: a count that large is a broken or hostile answer whose pages could go on for ever, and reading
windows a second at a time behind it would never catch up. The fetch stops there with an error (logged, counted
on the exchange) and the checkpoint at the last window read, which the next fetch retries.

An entry's id here is its member's id and its own (`remote_id`), as pytx keys them; feedback needs both
(`ncmec_feedback`).
"""

from __future__ import annotations

import logging
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import AsyncGenerator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import httpx
from threatexchange.exchanges.clients.ncmec import hash_api

from labeler.exchanges.credentials import Credentials
from labeler.exchanges.errors import ExchangeError, MalformedPage, UnreadablePage
from labeler.exchanges.http import accepted, send
from labeler.exchanges.paging import Followed
from labeler.exchanges.store import ExchangeUpdate
from labeler.exchanges.types import CredentialField, ExchangeType, FeedbackCall, Fetching, Page
from labeler.pipeline.signals import MD5, PDQ

log = logging.getLogger(__name__)

ENVIRONMENTS: Final = {env.name: env.value for env in hash_api.NCMECEnvironment}
_DATE: Final = "%Y-%m-%dT%H:%M:%SZ"  # pytx's format, written in UTC
_PAGING_VALID_SECONDS: Final = 12 * 60 * 60
WINDOW_ENTRIES: Final = 200_000  # a window listing more is narrowed: paging through it must end within 12 hours
_MAX_SKIPS: Final = 60  # one-second windows skipped a fetch, at most
_SETTLE_SECONDS: Final = 5  # the window ends a little before now: entries still landing are fetched next time
_MAX_PAGE_BYTES: Final = 64 * 1024 * 1024
_NEXT_PREFIX: Final = "/v2/entries?"
_SIGNALS: Final = {"pdq": PDQ, "md5": MD5}  # NCMEC fingerprint tag → our signal type


class NcmecClient:
    """GETs of one NCMEC environment with one member's credentials."""

    def __init__(self, base_url: str, credentials: Credentials, http: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = httpx.BasicAuth(credentials["user"], credentials["password"])
        self._http = http

    def first_url(self, start: int, end: int) -> str:
        query = urllib.parse.urlencode({"from": _date(start), "to": _date(end)})
        return f"{self.base_url}/v2/entries?{query}"

    def next_url(self, next_: str) -> str:
        return self.base_url + next_

    async def get(self, url: str) -> bytes:
        return await self._call("GET", url)

    async def put(self, url: str, body: bytes) -> None:
        await self._call("PUT", url, content=body, headers={"content-type": "application/xml; charset=utf-8"})

    async def _call(self, method: str, url: str, **request: Any) -> bytes:
        return accepted(
            await send(self._http, method, url, who="NCMEC", max_bytes=_MAX_PAGE_BYTES, auth=self._auth, **request),
            who="NCMEC", asked=_path_of(url), refused=(401, 403), refusal="the credentials",
            fix="check the user name and password given to `labeler exchange add`, and that NCMEC has enabled API "
            "access for them",
        )  # fmt: skip


async def pages(
    client: NcmecClient,
    checkpoint: dict[str, Any] | None,
    *,
    clock: Callable[[], float] = time.time,
    window_entries: int = WINDOW_ENTRIES,
    skip_unreadable: bool = False,
) -> AsyncGenerator[Page]:
    """The pages still to fetch after `checkpoint`, window after window, each with the checkpoint that follows it.
    Auth failures, outages and unreadable pages raise (the caller's checkpoint stays at the last applied page);
    with `skip_unreadable`, unreadable pages are skipped (see the module docstring)."""
    checkpoint = checkpoint or {}
    start = int(checkpoint.get("from", 0))
    span = _span(checkpoint.get("span"))
    next_ = str(checkpoint.get("next") or "")
    until = int(clock()) - _SETTLE_SECONDS  # this fetch's end: what lands meanwhile is fetched next time
    if next_ and clock() - float(checkpoint.get("paged_at", 0)) <= _PAGING_VALID_SECONDS:
        end = int(checkpoint["to"])
        until = max(until, end)
    else:
        next_ = ""
    followed = Followed("NCMEC")
    skips = 0
    if next_:
        followed.follow(next_)
    while True:
        if not next_:
            end = until if span is None else min(until, start + span)
        body = await client.get(client.next_url(next_) if next_ else client.first_url(start, end))
        try:
            updates, following = parse_page(body)
            problem, unread = None, False
        except MalformedPage as exc:
            which = f"page {next_}" if next_ else f"first page of the window from {_date(start)} to {_date(end)}"
            skipped_to = _skip_past(next_)
            if not skip_unreadable:
                raise UnreadablePage(f"NCMEC's {which} is malformed ({exc})") from None
            if skipped_to is None and end - start > 1:
                span = (end - start) // 2  # to find the unreadable part
                log.info("NCMEC's %s is malformed (%s); narrowing to %d s", which, exc, span)
                continue
            if skips == _MAX_SKIPS:
                raise UnreadablePage(f"NCMEC's {which} is malformed ({exc}) after {skips} skips") from None
            skips += 1
            if skipped_to is None:
                done = end >= until
                problem = f"skipped NCMEC's changes from {_date(start)} to {_date(end)}: {exc}"
                yield Page([], {"from": end} | ({} if done else {"span": 1}), done, problem)
                if done:
                    return
                start, span = end, 1
                continue
            updates, following, problem, unread = [], skipped_to, f"skipped a malformed NCMEC {which}: {exc}", True
        if skips and not unread:
            skip_unreadable = False  # read past what was skipped: the next unreadable page is read again first
        listed = _window_size(next_, following, len(updates))
        if not next_ and listed > window_entries:
            if end - start <= 1:
                raise ExchangeError(
                    f"NCMEC lists {listed} entries in the second from {_date(start)}, more than a window may list "
                    f"({window_entries}): no narrower window can be asked for, and paging through it would not end; "
                    "stopped there, will retry (ask NCMEC if it persists)"
                )
            span = max(1, (end - start) * window_entries // listed // 2)  # too big to page through: narrow it
            log.info("NCMEC window from %s lists %d entries; narrowing to %d s", _date(start), listed, span)
            continue
        if following:
            paged = {"from": start, "to": end, "next": following, "paged_at": clock(), "span": span}
            yield Page(updates, paged, False, problem)
            next_ = followed.follow(following)
            continue
        if span is not None and listed < window_entries // 4:
            span *= 2  # a small window: the next one may be wider
        done = end >= until
        after = {"from": end} if done or span is None else {"from": end, "span": span}
        yield Page(updates, after, done, problem)
        if done:
            return
        start, next_ = end, ""


def _window_size(next_: str, following: str, listed: int) -> int:
    """How many entries the window being read lists, by the `max` of its paging link: known from its first page
    (only a window that fits on one page has none, and then it lists what the page holds)."""
    info = hash_api.GetEntriesNextInfo.from_next(urllib.parse.urlsplit(following).query) if following else None
    if next_ or info is None:
        return listed
    return info.max


def _span(value: Any) -> int | None:
    return None if value is None else max(1, int(value))


class NcmecType(ExchangeType):
    name = "ncmec"
    signal_types = (PDQ, MD5)
    credentials = (CredentialField("user", secret=False), CredentialField("password"))
    option_keys = ("url", "environment")
    has_feedback = True  # upvotes and downvotes of entries (`ncmec_feedback`)

    def options(self, given: Mapping[str, str | None]) -> dict[str, Any]:
        environment = given.get("environment") or "Industry"
        if environment not in ENVIRONMENTS:
            raise ExchangeError(f"--environment must be one of {', '.join(sorted(ENVIRONMENTS))}")
        return {"url": given.get("url") or ENVIRONMENTS[environment]}

    def pages(self, fetch: Fetching) -> AsyncGenerator[Page]:
        client = NcmecClient(fetch.options["url"], fetch.credentials, fetch.http)
        return pages(client, fetch.checkpoint, clock=fetch.clock, skip_unreadable=fetch.skip_unreadable)

    async def send_feedback(self, call: FeedbackCall) -> None:
        from labeler.exchanges.ncmec_feedback import send_vote  # it uses this module's client: imported here

        await send_vote(NcmecClient(call.options["url"], call.credentials, call.http), call)


TYPE: Final = NcmecType()


def parse_page(body: bytes) -> tuple[list[ExchangeUpdate], str]:
    """A page's updates and its `paging/next` link; entries pytx cannot read are logged and skipped."""
    root = read_xml(body)
    if root.tag != "queryResult":
        raise MalformedPage(f"<{root.tag}> where <queryResult> was expected")
    updates: list[ExchangeUpdate] = []
    for group in (root.find("images"), root.find("videos")):
        for element in group if group is not None else ():
            try:
                entry = hash_api.NCMECEntryUpdate.from_xml(hash_api._XMLWrapper(element))
            except (IndexError, ValueError, TypeError, AssertionError) as exc:
                log.warning("skipped an NCMEC entry pytx cannot read (<%s>): %s", element.tag, type(exc).__name__)
                continue
            tags = {tag.lower(): value for tag, value in entry.fingerprints.items()}
            signals = {ours: tags[tag] for tag, ours in _SIGNALS.items() if tag in tags}
            updates.append(ExchangeUpdate(remote_id(entry.member_id, entry.id), entry.deleted, signals))
    following = (root.findtext("paging/next") or "").strip()
    if following and not following.startswith(_NEXT_PREFIX):
        raise MalformedPage(f"paging link outside {_NEXT_PREFIX}")
    return updates, following


def remote_id(member_id: int, entry_id: str) -> str:
    """An entry's id here: its member's and its own, as pytx keys entries (ids are the uploading member's), and
    as feedback addresses them (`/v2/entries/<member>/<entry>/…`)."""
    return f"{member_id}-{entry_id}"


def read_xml(body: bytes) -> ET.Element:
    """An answer's XML without namespaces, which add nothing here (pytx strips them too); MalformedPage if it is
    not XML."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise MalformedPage(f"not XML: {exc}") from None
    for element in root.iter():
        element.tag = element.tag.rpartition("}")[2]
    return root


def _skip_past(next_: str) -> str | None:
    """The paging link after the page `next_` names ("" when it was the last), by its `start`/`size`/`max`; None
    for the first page of a window, which has no paging parameters."""
    info = hash_api.GetEntriesNextInfo.from_next(urllib.parse.urlsplit(next_).query) if next_ else None
    if info is None:
        return None
    if info.start + info.size > info.max:
        return ""
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(next_).query))
    params["start"] = str(info.start + info.size)
    return _NEXT_PREFIX + urllib.parse.urlencode(params)


def _date(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime(_DATE)


def _path_of(url: str) -> str:
    """A URL without its query, for messages."""
    return urllib.parse.urlsplit(url).path
