"""A stand-in for Meta's ThreatExchange (the Graph API) speaking its wire format as python-threatexchange's client
reads it (`threatexchange.exchanges.clients.fb_threatexchange.api` and `threat_updates`, and
`impl/fb_threatexchange_api`): everything under the API version (`/v26.0`), the app token `appid|secret` as the
`access_token` query parameter, and Graph's error JSON (`{"error": {"message", "type", "code", "fbtrace_id"}}`,
HTTP 400 for a bad token or an unknown object, 500 with `is_transient` for an outage).

`GET /v26.0/<privacy group>/threat_updates/` answers the group's indicators whose `last_updated` falls in
[`start_time`, `stop_time`), oldest first (then by id), `limit` at a time (at most `page_size`), of the indicator
`types` asked for, with only the `fields` asked for (and `id`, which Graph always sends): `{"data": [...],
"paging": {"cursors": {...}, "next": URL}}`, where `next` is an absolute URL on this host carrying the query
again, the token included, and an opaque `after` cursor, as Graph writes them; a full page always has one, so a
window of a whole number of pages ends with an empty page. A withdrawn indicator is a
tombstone: `should_delete` true and no `descriptors`.

Test controls: `page_size`; `malformed` (offset into the window → "data": that page's `data` is not a list,
its paging intact; "truncated": the body is cut short; an indicator's `poisoned` cuts short any page holding it,
for as long as it is listed: HMA issue #2004); `fail_after` (after that many threat_updates requests
every one fails: Graph's transient 500, an outage mid-fetch, or with `failure` "throttled" its rate-limit 400);
`next_base` (the scheme and host its `next` links name instead of its own); `stuck` (every page after the first
links to itself as the next, a paging bug); `requests` (every threat_updates
query, in order); `down` (indicator and descriptor requests answer a transient 500); `reacted` (every reaction
POST, in order).

Feedback: `GET /v26.0/<indicator id>?fields=descriptors{…}` answers the indicator with the first page of its
`descriptors` edge (`descriptor_page_size` of them, 25 as Graph's edges; Graph leaves the edge out when nothing is
in it), whose `next` link (on `next_base` when set) is `GET /v26.0/<indicator id>/descriptors` with the token,
`fields`, `limit` and an `after` cursor; `POST /v26.0/<descriptor id>/` with `reactions` and
`reactions_to_remove` (in the query, as pytx sends them, or the form) adds and removes this app's reactions and
answers `{"success": true}`; a reaction Graph does not know is a 400 (code 100).
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

VERSION: Final = "/v26.0"  # python-threatexchange's ThreatExchangeAPI._TE_BASE_URL
# Graph's ReactionType values (https://developers.facebook.com/docs/threat-exchange/reference/apis/reaction-type/)
REACTIONS: Final = ("HELPFUL", "NOT_HELPFUL", "OUTDATED", "SAW_THIS_TOO", "WANT_MORE_INFO", "DISAGREE_WITH_TAGS")


@dataclass
class Descriptor:
    """One member app's opinion of an indicator."""

    id: str
    owner: str  # the app id
    status: str = "MALICIOUS"
    tags: list[str] = field(default_factory=list)
    reactions: dict[str, list[str]] = field(default_factory=dict)  # reaction → app ids


@dataclass
class Indicator:
    id: str
    type: str  # HASH_PDQ, HASH_VIDEO_MD5, HASH_MD5, URI, …
    indicator: str
    last_updated: int
    descriptors: list[Descriptor] = field(default_factory=list)
    deleted: bool = False
    broken: bool = False  # sent without its `indicator`, which pytx cannot read
    poisoned: bool = False  # any page holding it is cut short


@dataclass
class ThreatExchangeStandin:
    app_id: str = "1234567890"
    secret: str = "s3cr3t-app-secret-0123456789"
    privacy_group: str = "303636684709969"
    page_size: int = 2
    indicators: list[Indicator] = field(default_factory=list)
    malformed: dict[int, str] = field(default_factory=dict)
    fail_after: int | None = None
    failure: str = "outage"  # or "throttled": Graph's rate limit (HTTP 400, code 4)
    next_base: str | None = None
    stuck: bool = False  # a page after the first links to itself as the next (a paging bug)
    requests: list[dict[str, str]] = field(default_factory=list)
    down: bool = False  # every indicator and descriptor request answers Graph's transient 500
    reacted: list[tuple[str, str, str]] = field(default_factory=list)  # (descriptor, reactions, reactions_to_remove)
    descriptor_page_size: int = 25  # Graph's default page of an edge

    @property
    def token(self) -> str:
        return f"{self.app_id}|{self.secret}"

    def app(self) -> Starlette:
        updates, node = self._threat_updates, self._node
        return Starlette(
            routes=[
                Route(VERSION + "/{group}/threat_updates", updates),
                Route(VERSION + "/{group}/threat_updates/", updates),
                Route(VERSION + "/{node}/descriptors", self._descriptors),
                Route(VERSION + "/{node}", node, methods=["GET", "POST"]),
                Route(VERSION + "/{node}/", node, methods=["GET", "POST"]),
            ]
        )

    def _refused(self, request: Request) -> Response | None:
        """Graph's answer to a missing, unreadable or wrong token (None: the token is ours)."""
        token = request.query_params.get("access_token")
        if token is None:
            return graph_error(400, "An access token is required to request this resource.", "OAuthException", 104)
        if "|" not in token:
            return graph_error(400, "Invalid OAuth access token - Cannot parse access token", "OAuthException", 190)
        if token != self.token:
            return graph_error(400, "Invalid OAuth access token signature.", "OAuthException", 190)
        return None

    async def _threat_updates(self, request: Request) -> Response:
        query = dict(request.query_params)
        self.requests.append(query)
        refused = self._refused(request)
        if refused is not None:
            return refused
        group = request.path_params["group"]
        if group != self.privacy_group:
            return unknown_object(group)
        if self.fail_after is not None and len(self.requests) > self.fail_after:
            if self.failure == "throttled":
                return graph_error(400, "(#4) Application request limit reached", "OAuthException", 4, transient=True)
            return graph_error(
                500, "An unexpected error has occurred. Please retry your request later.", "OAuthException", 2,
                transient=True,
            )  # fmt: skip
        try:
            start = int(query.get("start_time", "0"))
            stop = int(query["stop_time"]) if "stop_time" in query else None
            limit = min(int(query.get("limit", "25")), self.page_size)
            offset = _offset(query.get("after"))
        except (ValueError, KeyError):
            return graph_error(400, "(#100) Invalid parameter", "OAuthException", 100)
        types = set(query["types"].split(",")) if query.get("types") else None
        window = sorted(
            (
                i
                for i in self.indicators
                if start <= i.last_updated and (stop is None or i.last_updated < stop)
                and (types is None or i.type in types)
            ),
            key=lambda i: (i.last_updated, int(i.id)),
        )  # fmt: skip
        page = window[offset : offset + limit]
        wanted = _top_fields(query.get("fields", ""))
        answer: dict[str, Any] = {"data": [record(i, wanted) for i in page]}
        paging: dict[str, Any] = {"cursors": {"before": _cursor(offset), "after": _cursor(offset + len(page))}}
        if len(page) == limit:  # as Graph does, a full page links on even when nothing follows
            base = self.next_base or f"{request.url.scheme}://{request.url.netloc}"
            after = offset if self.stuck and offset else offset + limit
            following = {k: v for k, v in query.items() if k != "after"} | {"after": _cursor(after)}
            paging["next"] = f"{base}{request.url.path}?{urllib.parse.urlencode(following)}"
        answer["paging"] = paging
        broken = "truncated" if any(i.poisoned for i in page) else self.malformed.get(offset)
        if broken == "truncated":
            return Response(json.dumps(answer)[:40], media_type="application/json")
        if broken == "data":
            answer["data"] = "internal error"
        return JSONResponse(answer)

    def _unanswered(self, request: Request) -> Response | None:
        """Graph's answer to an indicator or descriptor request with a refused token, or while `down`; None: the
        request is to be answered."""
        refused = self._refused(request)
        if refused is not None:
            return refused
        if self.down:
            return graph_error(500, "An unknown error occurred", "OAuthException", 1, transient=True)
        return None

    def _indicator(self, node: str) -> Indicator | None:
        return next((i for i in self.indicators if i.id == node and not i.deleted), None)

    async def _node(self, request: Request) -> Response:
        """GET an indicator (its `descriptors` edge) or POST reactions to a descriptor."""
        unanswered = self._unanswered(request)
        if unanswered is not None:
            return unanswered
        node = request.path_params["node"]
        if request.method == "GET":
            found = self._indicator(node)
            if found is None:
                return unknown_object(node)
            answer: dict[str, Any] = {"id": found.id}
            if "descriptors" in _top_fields(request.query_params.get("fields", "")) and found.descriptors:
                answer["descriptors"] = self._descriptor_page(request, found, 0, self.descriptor_page_size)
            return JSONResponse(answer)
        descriptor = next((d for i in self.indicators for d in i.descriptors if d.id == node), None)
        if descriptor is None:
            return unknown_object(node)
        form = dict(urllib.parse.parse_qsl((await request.body()).decode("utf-8", "replace")))
        given = {k: request.query_params.get(k) or form.get(k) or "" for k in ("reactions", "reactions_to_remove")}
        if any(r and r not in REACTIONS for r in given.values()):
            return graph_error(
                400, "(#100) Param reactions must be one of " + ", ".join(REACTIONS), "OAuthException", 100
            )
        self.reacted.append((descriptor.id, given["reactions"], given["reactions_to_remove"]))
        removed = descriptor.reactions.get(given["reactions_to_remove"], [])
        if self.app_id in removed:
            removed.remove(self.app_id)
        if given["reactions"]:
            added = descriptor.reactions.setdefault(given["reactions"], [])
            if self.app_id not in added:  # a reaction is one per app
                added.append(self.app_id)
        return JSONResponse({"success": True})

    async def _descriptors(self, request: Request) -> Response:
        """GET `/<indicator id>/descriptors`: the edge's page at the `after` cursor, as its `next` links ask."""
        unanswered = self._unanswered(request)
        if unanswered is not None:
            return unanswered
        node = request.path_params["node"]
        found = self._indicator(node)
        if found is None:
            return unknown_object(node)
        try:
            offset = _offset(request.query_params.get("after"))
            limit = min(int(request.query_params.get("limit", "25")), self.descriptor_page_size)
        except ValueError:
            return graph_error(400, "(#100) Invalid parameter", "OAuthException", 100)
        return JSONResponse(self._descriptor_page(request, found, offset, limit))

    def _descriptor_page(self, request: Request, indicator: Indicator, offset: int, limit: int) -> dict[str, Any]:
        """A page of an indicator's descriptors edge (id and owner), with a `next` link to the rest as Graph
        writes it: absolute, on the edge's own path, carrying the token."""
        page = indicator.descriptors[offset : offset + limit]
        paging: dict[str, Any] = {"cursors": {"before": _cursor(offset), "after": _cursor(offset + len(page))}}
        if offset + limit < len(indicator.descriptors):
            base = self.next_base or f"{request.url.scheme}://{request.url.netloc}"
            query = {
                "access_token": request.query_params.get("access_token", ""), "fields": "id,owner{id}",
                "limit": str(limit), "after": _cursor(offset + limit),
            }  # fmt: skip
            paging["next"] = f"{base}{VERSION}/{indicator.id}/descriptors?{urllib.parse.urlencode(query)}"
        return {"data": [{"id": d.id, "owner": {"id": d.owner}} for d in page], "paging": paging}


def record(indicator: Indicator, wanted: set[str]) -> dict[str, Any]:
    """The threat_updates record of `indicator` with the top-level `wanted` fields (and `id`)."""
    shown: dict[str, Any] = {
        "id": indicator.id,
        "indicator": indicator.indicator,
        "type": indicator.type,
        "last_updated": indicator.last_updated,
        "should_delete": indicator.deleted,
    }
    if not indicator.deleted:
        shown["descriptors"] = {
            "data": [_descriptor(d) for d in indicator.descriptors],
            "paging": {"cursors": {"before": "QVFI", "after": "QVFI"}},
        }
    if indicator.broken:
        del shown["indicator"]
    return {k: v for k, v in shown.items() if k == "id" or k in wanted}


def _descriptor(descriptor: Descriptor) -> dict[str, Any]:
    return {
        "id": descriptor.id,
        "reactions": [{"key": k, "value": ",".join(apps)} for k, apps in descriptor.reactions.items() if apps],
        "my_reactions": [],
        "owner": {"id": descriptor.owner},
        "tags": list(descriptor.tags),
        "status": descriptor.status,
        "added_on": "2023-11-14T22:13:20+0000",
    }


def _top_fields(fields: str) -> set[str]:
    """The top-level names of a Graph `fields` selection (`a,b{c,d{e}}` → a, b)."""
    names, depth, current = set(), 0, ""
    for char in fields + ",":
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == "," and depth == 0:
            names.add(current.strip())
            current = ""
        elif depth == 0:
            current += char
    return names - {""}


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(cursor: str | None) -> int:
    return 0 if cursor is None else int(json.loads(base64.urlsafe_b64decode(cursor))["offset"])


def graph_error(
    status: int, message: str, type_: str, code: int, *, transient: bool = False, subcode: int | None = None
) -> Response:
    error: dict[str, Any] = {"message": message, "type": type_, "code": code, "fbtrace_id": "AbCdEfGhIjK"}
    if transient:
        error["is_transient"] = True
    if subcode is not None:
        error["error_subcode"] = subcode
    headers = {"www-authenticate": f'OAuth "Facebook Platform" "invalid_token" "{message}"'} if code == 190 else {}
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def unknown_object(object_id: str) -> Response:
    message = (
        f"Unsupported get request. Object with ID '{object_id}' does not exist, cannot be loaded due to missing "
        "permissions, or does not support this operation. Please read the Graph API documentation at "
        "https://developers.facebook.com/docs/graph-api"
    )
    return graph_error(400, message, "GraphMethodException", 100, subcode=33)
