"""A stand-in for Tech Against Terrorism's TCAP login and hash list (v2), speaking the wire format
python-threatexchange's client speaks (`threatexchange.exchanges.clients.techagainstterrorism.api`, its tests'
records, and TAT's published docs):

- POST `/token-auth/tcap/`, a form with `username`, `password` and `resend`: `{"token": <JWT>, "user": {…}}`, or
  for wrong credentials 400 `{"non_field_errors": [...]}` (what a Django REST framework JWT login answers; TAT's
  docs give no status, and pytx only raises on any non-2xx).
- GET `/api/hash-list/v2/all?order=asc&after=<checkpoint>[&limit&offset]` with `Authorization: Bearer <token>`:
  `{"count", "next", "previous", "checkpoint", "results"}`, records ordered by (`updated_on`, `id`) with `id`,
  `hash_digest`, `algorithm`, `ideology`, `file_type`, `deleted`, `updated_on` (epoch seconds, a float),
  `created_on`. `after` ("<updated_on>,<id>", "" for the start) lists what changed after that record; `checkpoint`
  is the page's last record's, null on an empty page; `next` is an absolute URL with `limit` and `offset` (DRF's
  limit/offset paging, which pytx appends to its own query and so follows by offset), null on the last page. No
  token: 401; an expired one: 403 with TAT's documented body "Authentication error: Token has expired. Please
  refresh."

Test controls: `page_size`; `token_uses` (hash-list requests a token is good for before it has expired; None:
forever); `list_access` (False: the account may log in but not read the list, 403); `fail_after` (after that many
hash-list requests every one answers 503: an outage mid-fetch); `malformed` (`after` values whose page is
answered with a truncated body); `stuck` (every page after the first gives the `after` it was asked with as its
checkpoint, a paging bug); `records` (a record's `broken` drops its `hash_digest`, which pytx cannot read; a
`poisoned` one makes any page holding it a truncated body, for as long as it is listed: HMA issue #2004);
and what was asked: `logins` (user names) and `requests` (each hash-list query, with the token it carried).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

EXPIRED = "Authentication error: Token has expired. Please refresh."


@dataclass
class Record:
    id: int
    hash_digest: str
    updated_on: float
    algorithm: str = "PDQ"
    file_type: str = "jpg"
    ideology: str = "islamist"
    deleted: bool = False
    broken: bool = False  # sent without its hash_digest
    poisoned: bool = False  # any page holding it is cut short

    def wire(self) -> dict[str, Any]:
        sent = {
            "id": self.id, "hash_digest": self.hash_digest, "algorithm": self.algorithm, "ideology": self.ideology,
            "file_type": self.file_type, "deleted": self.deleted, "updated_on": self.updated_on,
            "created_on": "2025-03-03 23:05:22,587",
        }  # fmt: skip
        if self.broken:
            del sent["hash_digest"]
        return sent


@dataclass
class TatStandin:
    records: list[Record] = field(default_factory=list)
    user: str = "platform-user"
    password: str = "platform-password"
    page_size: int = 2
    token_uses: int | None = None
    list_access: bool = True
    fail_after: int | None = None
    malformed: set[str] = field(default_factory=set)
    stuck: bool = False  # a page after the first gives the `after` it was asked with as its checkpoint (a bug)
    logins: list[str] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)
    tokens: dict[str, int] = field(default_factory=dict)  # every token issued → hash-list requests made with it

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/token-auth/tcap/", self._login, methods=["POST"]),
                Route("/api/hash-list/v2/all", self._hash_list),
            ]
        )

    async def _login(self, request: Request) -> Response:
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode()).items()}
        self.logins.append(form.get("username", ""))
        if (form.get("username"), form.get("password")) != (self.user, self.password):
            return JSONResponse({"non_field_errors": ["Unable to log in with provided credentials."]}, 400)
        token = f"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{secrets.token_urlsafe(24)}.{secrets.token_urlsafe(32)}"
        self.tokens[token] = 0
        user = {"id": 7, "username": self.user, "organisation": "Example Platform", "permissions": ["hash-list"]}
        return JSONResponse({"token": token, "user": user})

    async def _hash_list(self, request: Request) -> Response:
        query = dict(request.query_params)  # a repeated key: the last value, as Django's QueryDict reads it
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        self.requests.append(query | {"token": token})
        if token not in self.tokens:
            return JSONResponse({"detail": "Authentication credentials were not provided."}, 401)
        self.tokens[token] += 1
        if self.token_uses is not None and self.tokens[token] > self.token_uses:
            return Response(EXPIRED, status_code=403)
        if not self.list_access:
            return JSONResponse({"detail": "You do not have permission to perform this action."}, 403)
        if self.fail_after is not None and len(self.requests) > self.fail_after:
            return Response("Service Unavailable", status_code=503)
        after = query.get("after", "")
        if after in self.malformed:
            return Response(b'{"count": 3, "next": null, "results": [{"id": ', media_type="application/json")
        try:
            offset, limit = int(query.get("offset", "0")), int(query.get("limit", str(self.page_size)))
            listed = [r for r in sorted(self.records, key=_key) if not after or _key(r) > _key_of(after)]
        except ValueError:
            return JSONResponse({"detail": "Invalid query."}, 400)
        page = listed[offset : offset + limit]
        following = None
        if offset + limit < len(listed):
            paging = {"order": query.get("order", "asc"), "after": after, "limit": limit, "offset": offset + limit}
            following = f"{request.url.scheme}://{request.url.netloc}{request.url.path}?{urlencode(paging)}"
        body = {
            "count": len(listed),
            "next": following,
            "previous": None,
            "checkpoint": after if self.stuck and after else f"{page[-1].updated_on},{page[-1].id}" if page else None,
            "results": [r.wire() for r in page],
        }
        text = json.dumps(body)
        if any(r.poisoned for r in page):  # cut inside the list, as a corrupt answer would be
            text = text[: text.index('"results"') + 20]
        return Response(text, media_type="application/json")


def _key(record: Record) -> tuple[float, int]:
    return record.updated_on, record.id


def _key_of(checkpoint: str) -> tuple[float, int]:
    updated_on, _, id_ = checkpoint.partition(",")
    return float(updated_on), int(id_)
