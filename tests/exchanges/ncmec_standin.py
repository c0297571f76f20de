"""A stand-in for NCMEC's hash-sharing API v2 (`GET /v2/entries`, `GET /v2/status`, feedback) speaking its wire format
as python-threatexchange's client reads it (`threatexchange.exchanges.clients.ncmec.hash_api` and its test data):
HTTP basic auth (401 otherwise), `from`/`to` as `%Y-%m-%dT%H:%M:%SZ`, a namespaced `queryResult` with `images` /
`videos` groups carrying `maxTimestamp`, entries (`image`, `video`) and tombstones (`deletedImage`,
`deletedVideo`), and `paging/next`: a path under the environment URL with the window's `from`/`to` and
`start` (1-based), `size` and `max`. Entries come in id order, not time order, as NCMEC's do.

An entry is listed in a window when its last change (`changed`) falls in [from, to): an entry changed later shows
its current state there, a deleted one as a tombstone. Test controls: `page_size`, `malformed` (the `start`
values of pages answered with a truncated body; an entry's `poisoned` truncates any page holding it, for as long as
it is listed: HMA issue #2004), `fail_after` (after that many requests to `/v2/entries` every one
answers 503: an outage mid-fetch), `stuck` (the `start` values of pages whose paging link names the page itself
again, a paging bug), `overstated` (a count every window states in its paging links' `max`, however narrow the
window and whatever it holds, paging on with empty pages up to it: a broken or hostile server) and `requests`
(every query string seen, in order).

Feedback as pytx's `submit_feedback` sends it: `GET /v2/feedback/<FINGERPRINT>/reasons` lists the downvote
reasons (`availableFeedbackReasons`, `reasons` per fingerprint type: GUID → name), and `PUT
/v2/entries/<member>/<entry>/<FINGERPRINT>/feedback` takes a `feedbackSubmission` XML body (`affirmative`, or
`negative` with `reasonIds/guid` naming an offered reason; 400 otherwise, 404 for an entry or fingerprint the
stand-in does not hold, 415 for a body not sent as XML). A member's vote replaces its earlier one, as NCMEC's
does. Controls: `feedback_down` (every feedback request answers 503 while set) and `votes` (every vote taken,
in order).
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

NS = "https://hashsharing.ncmec.org/hashsharing/v2"
DATE = "%Y-%m-%dT%H:%M:%SZ"


@dataclass
class Entry:
    id: str
    changed: int  # epoch seconds of its last change
    fingerprints: dict[str, str]  # NCMEC tag (pdq, md5, sha1, …) → value
    kind: str = "image"  # image | video
    deleted: bool = False
    member: int = 42
    broken: bool = False  # sent without its <id>, which pytx cannot read
    poisoned: bool = False  # any page holding it is cut short


REASON = "8b0b3b3a-3c36-4c2a-9a5e-0d6d0f3c2b10"  # the one downvote reason offered unless a test sets more


@dataclass(frozen=True)
class Vote:
    """A feedback call the stand-in took: whose entry, which fingerprint, affirmative or negative, and why."""

    member: int
    entry: str
    fingerprint: str
    vote: str
    reason: str | None


@dataclass
class NcmecStandin:
    user: str = "esp-user"
    password: str = "esp-password"
    page_size: int = 2
    entries: list[Entry] = field(default_factory=list)
    malformed: set[int] = field(default_factory=set)
    fail_after: int | None = None
    stuck: set[int] = field(default_factory=set)  # pages (by `start`) whose paging link names the page itself
    overstated: int | None = None  # every window, however narrow, lists this many entries (and pages on to them)
    requests: list[dict[str, str]] = field(default_factory=list)
    reasons: dict[str, dict[str, str]] = field(
        default_factory=lambda: {"PDQ": {REASON: "Not CSAM"}, "MD5": {REASON: "Not CSAM"}}
    )
    feedback_down: bool = False
    votes: list[Vote] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v2/entries", self._entries),
                Route("/v2/status", self._status),
                Route("/v2/feedback/{fingerprint}/reasons", self._reasons),
                Route("/v2/entries/{member}/{entry}/{fingerprint}/feedback", self._feedback, methods=["PUT"]),
            ]
        )

    async def _reasons(self, request: Request) -> Response:
        if not self._authorized(request):
            return _unauthorized()
        if self.feedback_down:
            return Response("Service Unavailable", status_code=503)
        offered = self.reasons.get(request.path_params["fingerprint"])
        if offered is None:
            return Response("Not Found", status_code=404)
        root = ET.Element("feedbackReasons", xmlns=NS)
        listed = ET.SubElement(root, "availableFeedbackReasons")
        for guid, name in offered.items():
            ET.SubElement(listed, "reason", guid=guid, name=name, type="negative")
        return _xml(root)

    async def _feedback(self, request: Request) -> Response:
        if not self._authorized(request):
            return _unauthorized()
        if self.feedback_down:
            return Response("Service Unavailable", status_code=503)
        if not request.headers.get("content-type", "").startswith("application/xml"):
            return Response("Unsupported Media Type", status_code=415)
        member, entry_id, fingerprint = (request.path_params[k] for k in ("member", "entry", "fingerprint"))
        held = [
            e for e in self.entries if str(e.member) == member and e.id == entry_id and not e.deleted
            and fingerprint.lower() in {tag.lower() for tag in e.fingerprints}
        ]  # fmt: skip
        if not held:
            return Response("Not Found", status_code=404)
        try:
            root = ET.fromstring(await request.body())
        except ET.ParseError:
            return Response("bad request: not XML", status_code=400)
        votes = list(root)
        if root.tag != f"{{{NS}}}feedbackSubmission" or len(votes) != 1:
            return Response("bad request: not a feedbackSubmission", status_code=400)
        vote = votes[0].tag.rpartition("}")[2]
        guids = [g.text or "" for g in votes[0].iter(f"{{{NS}}}guid")]
        if vote == "negative" and (len(guids) != 1 or guids[0] not in self.reasons.get(fingerprint, {})):
            return Response("bad request: a negative vote takes one offered reason", status_code=400)
        if vote not in ("affirmative", "negative") or (vote == "affirmative" and guids):
            return Response("bad request: affirmative or negative", status_code=400)
        self.votes.append(Vote(int(member), entry_id, fingerprint, vote, guids[0] if guids else None))
        return Response(status_code=200)

    def _authorized(self, request: Request) -> bool:
        expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return request.headers.get("authorization") == f"Basic {expected}"

    async def _status(self, request: Request) -> Response:
        if not self._authorized(request):
            return _unauthorized()
        root = ET.Element("status", xmlns=NS)
        ET.SubElement(root, "member", id="42").text = "Example Member"
        return _xml(root)

    async def _entries(self, request: Request) -> Response:
        query = dict(request.query_params)
        self.requests.append(query)
        if not self._authorized(request):
            return _unauthorized()
        if self.fail_after is not None and len(self.requests) > self.fail_after:
            return Response("Service Unavailable", status_code=503)
        try:
            start_ts, end_ts = (_epoch(query[k]) for k in ("from", "to"))
            start, size = int(query.get("start", "1")), int(query.get("size", str(self.page_size)))
        except (KeyError, ValueError):
            return Response("bad request", status_code=400)
        window = sorted((e for e in self.entries if start_ts <= e.changed < end_ts), key=lambda e: e.id)
        page = window[start - 1 : start - 1 + size]
        if start in self.malformed or any(e.poisoned for e in page):
            return Response(f'<?xml version="1.0"?><queryResult xmlns="{NS}"><images count="', media_type="text/xml")
        root = ET.Element("queryResult", xmlns=NS)
        for kind in ("image", "video"):
            group = [e for e in page if e.kind == kind]
            element = ET.SubElement(root, f"{kind}s", count=str(len(group)))
            if group:
                element.set("maxTimestamp", _date(max(e.changed for e in group)))
            for entry in group:
                _entry(element, entry)
        listed = len(window) if self.overstated is None else self.overstated
        if start - 1 + size < listed:
            following = start if start in self.stuck else start + size  # a paging bug: the same page again
            paging = {"from": query["from"], "to": query["to"], "start": following, "size": size}
            ET.SubElement(ET.SubElement(root, "paging"), "next").text = "/v2/entries?" + urlencode(
                paging | {"max": listed}
            )
        return _xml(root)


def _entry(group: ET.Element, entry: Entry) -> None:
    element = ET.SubElement(group, f"deleted{entry.kind.title()}" if entry.deleted else entry.kind)
    ET.SubElement(element, "member", id=str(entry.member)).text = "Example Member"
    ET.SubElement(element, "timestamp").text = _date(entry.changed)
    if not entry.broken:
        ET.SubElement(element, "id").text = entry.id
    if entry.deleted:
        return
    ET.SubElement(element, "classification").text = "A1"
    prints = ET.SubElement(element, "fingerprints")
    for tag, value in entry.fingerprints.items():
        ET.SubElement(prints, tag).text = value
    ET.SubElement(element, "feedback")


def _xml(root: ET.Element) -> Response:
    body = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' + ET.tostring(root)
    return Response(body, media_type="application/xml")


def _unauthorized() -> Response:
    return Response("Unauthorized", status_code=401, headers={"www-authenticate": 'Basic realm="hashsharing"'})


def _date(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime(DATE)


def _epoch(text: str) -> int:
    return int(datetime.strptime(text.replace(".000Z", "Z"), DATE).replace(tzinfo=UTC).timestamp())
