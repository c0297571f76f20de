"""Tech Against Terrorism's hash list (TCAP, v2): what changed after a checkpoint, page by page, read as
python-threatexchange's client reads it.

The wire format is pytx's `TATHashListAPI` (`threatexchange.exchanges.clients.techagainstterrorism.api`): a login,
POST `token-auth/tcap/` with the user name and password as a form, answers a JWT (`token`, beside `user`); the
list, GET `api/hash-list/v2/all?order=asc&after=<checkpoint>` with that token as a Bearer, answers JSON `count`,
`next`, `previous`, `checkpoint` and `results`, records with `id`, `hash_digest`, `algorithm` (PDQ, MD5, …),
`file_type`, `deleted`, `updated_on`. The list is of changes, not a snapshot: a record comes again, with its id,
when it is updated, and with `deleted` true when it is withdrawn. `checkpoint` ("<updated_on>,<id>" of the page's
last record) is where the next read starts, so it is both the paging token and what a later fetch resumes from; we
page by it rather than by `next`'s offset (which pytx follows within one fetch), because an offset into a list
ordered by update time skips records updated while it is read, and a checkpoint does not.

pytx logs in before every page; we log in once per fetch and again when the list refuses the token (TAT's tokens
are short-lived and an expired one is answered 401 or 403), so a long first fetch outlives its token. A login TAT
refuses, or a list that refuses a fresh token, is an auth failure. A record that is not one of pytx's
`TATHashListEntry` is skipped and logged, and the page's checkpoint still moves past it. A page that is not a
readable list has no checkpoint to skip it by: it stops the fetch, and the next fetches read it again. Once it has
stayed unreadable for `fetch.UNREADABLE_TRIES` fetches, the fetch reads on from the checkpoint one record a page
(`limit=1`: the list's `next` links are DRF limit/offset links, which pytx follows, so the list takes `limit` and
`offset`) until a one-record page is unreadable too, and skips that record by `offset=1` (or a few, when several in a
row are): the record after it gives the checkpoint past it, so only the unreadable record is lost. An unreadable
record that is the last TAT lists cannot be skipped until another follows it (there is nothing to take a
checkpoint from); the fetch keeps stopping there, with an error that says so. MD5 records
are taken whatever their file type (pytx keeps only videos' because HMA's MD5 signal is video-only; ours is any
blob's bytes), and SHA256 ones too (TAT's docs list SHA256 among its algorithms; pytx skips them). TAT has no
call to send feedback to.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Final

import httpx
from threatexchange.exchanges.clients.techagainstterrorism import api

from labeler.exchanges.credentials import Credentials
from labeler.exchanges.errors import ExchangeError, MalformedPage, UnreadablePage
from labeler.exchanges.http import accepted, send
from labeler.exchanges.paging import Followed
from labeler.exchanges.store import ExchangeUpdate
from labeler.exchanges.types import CredentialField, ExchangeType, Fetching, Page
from labeler.pipeline.signals import MD5, PDQ, SHA256

log = logging.getLogger(__name__)

WHO: Final = "Tech Against Terrorism"
DEFAULT_URL: Final = api.TATHashListAPI.BASE_URL
_SIGNALS: Final = {"PDQ": PDQ, "MD5": MD5, "SHA256": SHA256}  # TAT's algorithm → our signal type
_ENTRY_FIELDS: Final = tuple(f.name for f in dataclasses.fields(api.TATHashListEntry))
_CHECKPOINT: Final = re.compile(r"[0-9A-Za-z.,:_+-]{1,200}")
_MAX_PAGE_BYTES: Final = 32 * 1024 * 1024
_MAX_LOGIN_BYTES: Final = 1024 * 1024
_TOKEN: Final = re.compile(r"[A-Za-z0-9._~+/=-]{1,8192}")  # a JWT, or any bearer token (RFC 6750)
_MAX_HASH: Final = 512
_NARROWED: Final = 1000  # one-record pages read when skipping before whole pages again (a bound, not a page size)
_MAX_SKIPS: Final = 5  # unreadable records in a row skipped at once; more stop the fetch
# A login TAT refuses: TAT documents no status, and a Django REST framework JWT login (which TCAP's answer looks
# like) answers 400 to wrong credentials; 401 and 403 are refusals whatever the framework.
_REFUSED: Final = (400, 401, 403)


class TatClient:
    """The login and hash-list reads of one TCAP account; the token lives as long as the client (one fetch)."""

    def __init__(self, base_url: str, credentials: Credentials, http: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self._credentials = credentials
        self._http = http
        self._token: str | None = None

    async def login(self) -> None:
        form = {"username": self._credentials["user"], "password": self._credentials["password"], "resend": "False"}
        url = self.base_url + api.TATEndpoint.authenticate.value
        answer = await send(self._http, "POST", url, who=WHO, max_bytes=_MAX_LOGIN_BYTES, data=form)
        fix = "check the user name and password given to `labeler exchange add`"
        body = accepted(answer, who=WHO, asked="the login", refused=_REFUSED, refusal="the credentials", fix=fix)
        self._token = _token(body)

    async def hash_list(self, after: str, *, one: int | None = None) -> bytes:
        """One page of the list from `after` ("" for the start), or with `one` the one record at that offset
        after it; logging in when there is no token yet and again, once, when the list refuses the one there is."""
        fresh = self._token is None
        if fresh:
            await self.login()
        answer = await self._get(after, one)
        if answer[0] in (401, 403) and not fresh:
            log.info("%s refused the token (HTTP %d); logging in again", WHO, answer[0])
            await self.login()
            answer = await self._get(after, one)
        fix = "check that the account given to `labeler exchange add` is on-boarded for the hash list"
        refusal = "the hash list to a fresh token"
        return accepted(answer, who=WHO, asked="the hash list", refused=(401, 403), refusal=refusal, fix=fix)

    async def _get(self, after: str, one: int | None) -> tuple[int, bytes]:
        url = self.base_url + api.TATEndpoint.hash_list.value
        headers = {"authorization": f"Bearer {self._token}"}
        params = {"order": "asc", "after": after} | ({} if one is None else {"limit": "1", "offset": str(one)})
        return await send(self._http, "GET", url, who=WHO, max_bytes=_MAX_PAGE_BYTES, headers=headers, params=params)


async def pages(
    client: TatClient, checkpoint: Mapping[str, Any] | None, *, skip_unreadable: bool = False
) -> AsyncGenerator[Page]:
    """The pages after `checkpoint`, each with the checkpoint that follows it. Auth failures, outages and
    unreadable pages raise (the caller's checkpoint stays at the last applied page); with `skip_unreadable`, the
    first unreadable record after the checkpoint is skipped (see the module docstring)."""
    after = str((checkpoint or {}).get("after", ""))
    followed = Followed(WHO)
    followed.follow(after)
    narrowed = _NARROWED if skip_unreadable else 0  # one-record pages still to read
    offset = 0  # unreadable records skipped after `after`
    while True:
        body = await client.hash_list(after, one=offset if narrowed else None)
        where = f"after {after}" if after else "from the start"
        try:
            updates, following, more, skipped = parse_page(body)
        except MalformedPage as exc:
            if not narrowed:
                raise UnreadablePage(f"{WHO}'s hash list page {where} is malformed ({exc})") from None
            if offset == _MAX_SKIPS:
                raise UnreadablePage(f"{WHO}'s first {offset + 1} records {where} are all unreadable ({exc})") from None
            log.warning("%s's record %s (offset %d) is unreadable (%s)", WHO, where, offset, exc)
            offset += 1
            continue
        unread = bool(offset)
        if unread and not following:
            raise UnreadablePage(
                f"{WHO}'s record {where} is unreadable, and the list has none after it yet to skip it by"
            )
        if narrowed:
            narrowed = 0 if unread else narrowed - 1  # once past the unreadable record, whole pages again
        following = following or after  # an empty page may carry no checkpoint: stay where we were
        problems = [f"skipped {offset} unreadable {WHO} record(s) {where}"] if unread else []
        problems += [f"skipped {WHO} records pytx cannot read: {', '.join(skipped[:5])}"] if skipped else []
        yield Page(updates, {"after": following}, not more, "; ".join(problems) or None)
        if not more:
            return
        after, offset = followed.follow(following), 0


class TatType(ExchangeType):
    name = "tat"
    signal_types = (PDQ, MD5, SHA256)
    credentials = (CredentialField("user", secret=False), CredentialField("password"))

    def options(self, given: Mapping[str, str | None]) -> dict[str, Any]:
        return {"url": given.get("url") or DEFAULT_URL}

    def pages(self, fetch: Fetching) -> AsyncGenerator[Page]:
        client = TatClient(fetch.options["url"], fetch.credentials, fetch.http)
        return pages(client, fetch.checkpoint, skip_unreadable=fetch.skip_unreadable)


TYPE: Final = TatType()


def parse_page(body: bytes) -> tuple[list[ExchangeUpdate], str, bool, list[str]]:
    """A page's updates, its checkpoint ("" when it has none), whether more follow, and which records were
    skipped as unreadable (by index on the page, and id where there is one)."""
    try:
        page = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedPage(f"not JSON: {type(exc).__name__}") from None
    if not isinstance(page, dict) or not isinstance(page.get("results"), list):
        raise MalformedPage("no list of results")
    following, more = page.get("checkpoint") or "", page.get("next")
    if not isinstance(following, str) or (following and _CHECKPOINT.fullmatch(following) is None):
        raise MalformedPage("a checkpoint that is not one")
    if more is not None and not isinstance(more, str):
        raise MalformedPage("a next link that is not one")
    updates: list[ExchangeUpdate] = []
    skipped: list[str] = []
    for index, raw in enumerate(page["results"]):
        try:
            entry = _entry(raw)
        except (TypeError, ValueError) as exc:
            seen = raw.get("id") if isinstance(raw, dict) else None
            what = f"#{index}" + (f" (id {seen!r:.40})" if seen is not None else "")
            log.warning("skipped a %s record pytx cannot read (%s): %s", WHO, what, exc)
            skipped.append(what)
            continue
        ours = _SIGNALS.get(entry.algorithm.upper())
        signals = {ours: entry.hash_digest} if ours else {}
        updates.append(ExchangeUpdate(str(entry.id), entry.deleted, signals))
    return updates, following, bool(more), skipped


def _entry(raw: object) -> api.TATHashListEntry:
    """pytx's record from one of a page's results: its fields, of the types the ones we use must have (fields TAT
    adds later are left out rather than refusing the record)."""
    if not isinstance(raw, dict):
        raise TypeError("not an object")
    missing = [name for name in _ENTRY_FIELDS if name not in raw]
    if missing:
        raise ValueError(f"no {', '.join(missing)}")
    entry = api.TATHashListEntry(**{name: raw[name] for name in _ENTRY_FIELDS})
    if not isinstance(entry.id, int) or isinstance(entry.id, bool):
        raise TypeError("id is not an integer")
    if not isinstance(entry.deleted, bool):
        raise TypeError("deleted is not true or false")
    if not isinstance(entry.algorithm, str) or not isinstance(entry.hash_digest, str):
        raise TypeError("algorithm or hash_digest is not a string")
    if len(entry.hash_digest) > _MAX_HASH:
        raise ValueError("hash_digest too long")
    return entry


def _token(body: bytes) -> str:
    try:
        token = json.loads(body).get("token")
    except (UnicodeDecodeError, ValueError, AttributeError):
        token = None
    if not isinstance(token, str) or _TOKEN.fullmatch(token) is None:
        raise ExchangeError(f"{WHO}'s login answered without a usable token")
    return token
