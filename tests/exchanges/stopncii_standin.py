"""A stand-in for StopNCII.org's hash API (`GET /FetchHashes`, `POST /SubmitFeedback` under the `/v1` base) speaking
its wire format as python-threatexchange's client reads and writes it (`threatexchange.exchanges.clients.stopncii.api`
and its test data): the `Ocp-Apim-Subscription-Key` header on every request and the endpoint's own function key in
`x-functions-key`; `startTimestamp`, `pageSize` and `nextPageToken` query parameters; answers with `count`,
`nextPageToken`, `nextSetTimestamp`, `hasMoreRecords` and `hashRecords` (`lastModtimestamp`, `signalType`,
`hashValue`, `hashStatus`, `caseNumbers`, `CSPFeedbacks`); feedback as `{"count", "hashFeedbacks": [{"hashValue",
"feedbackValue", "tags"}]}`.

A set is every record whose last change is at or after `startTimestamp`, in time order; its opaque page token
names the position reached. As in pytx's test data, every page of a set gives the set's *last* change time as
`nextSetTimestamp`, so a client that resumed from it mid-set would miss records. Records changed while a set is
read move behind the position and come in the same set or the next one.

What the real service does on failure and the stand-in models: a missing or wrong subscription key is 401 (API
Management's JSON message), a missing or wrong function key 401, another endpoint's function key 403; a page token
that is unknown or past `token_lifetime` (pytx: "not valid over long periods of time"; the status StopNCII gives is
not documented, 400 here) is refused; `fail_after` makes every FetchHashes request after that many answer 503 (an
outage mid-paging); a `poisoned` record makes any page holding it a truncated JSON body (HMA issue #2004); a
`broken` record is sent with a `lastModtimestamp` pytx cannot read; `stuck` makes a page asked for with a token
give that same token as the next (a paging bug). `requests` keeps every FetchHashes query seen,
`feedback` every feedback accepted.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from threatexchange.exchanges.clients.stopncii import api

FEEDBACK_VALUES = {v.value for v in api.StopNCIICSPFeedbackValue}


@dataclass
class Record:
    hash_value: str
    changed: int  # lastModtimestamp: epoch seconds of its last change
    signal_type: str = "ImagePDQ"  # ImagePDQ | VideoMD5 | VideoTMK | Text | URL
    status: str = "Active"  # the aggregate hashStatus: Received | Active | Withdrawn | Deleted
    feedbacks: list[dict[str, Any]] = field(default_factory=list)
    broken: bool = False
    poisoned: bool = False

    @property
    def key(self) -> tuple[int, str, str]:
        return (self.changed, self.signal_type, self.hash_value)

    def as_json(self) -> dict[str, Any]:
        return {
            "lastModtimestamp": "yesterday" if self.broken else self.changed,
            "signalType": self.signal_type,
            "hashValue": self.hash_value,
            "hashStatus": self.status,
            "caseNumbers": {f"case-{self.hash_value[:8]}": self.status} if self.status != "Received" else [],
            "CSPFeedbacks": self.feedbacks,
        }


@dataclass
class _Token:
    start: int
    after: tuple[int, str, str]
    issued: float


@dataclass
class StopNciiStandin:
    subscription_key: str = "subscription-key-1"
    fetch_key: str = "fetch-function-key-1"
    feedback_key: str = "feedback-function-key-1"
    page_size: int = 2  # the most it puts on a page, whatever pageSize asks for
    records: list[Record] = field(default_factory=list)
    fail_after: int | None = None
    stuck: bool = False  # a page asked for with a token gives that same token as the next (a paging bug)
    fail_feedback: bool = False
    token_lifetime: float = 3600.0
    requests: list[dict[str, str]] = field(default_factory=list)
    feedback: list[dict[str, Any]] = field(default_factory=list)
    _tokens: dict[str, _Token] = field(default_factory=dict)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/FetchHashes", self._fetch_hashes),
                Route("/v1/SubmitFeedback", self._submit_feedback, methods=["POST"]),
            ]
        )

    def expire_tokens(self) -> None:
        """Every page token given so far is past its life."""
        for token in self._tokens.values():
            token.issued -= self.token_lifetime + 1

    def _refused(self, request: Request, key: str, other_key: str) -> Response | None:
        if request.headers.get("ocp-apim-subscription-key") != self.subscription_key:
            message = "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."  # noqa: E501
            return JSONResponse({"statusCode": 401, "message": message}, status_code=401)
        given = request.headers.get("x-functions-key")
        if given == other_key:
            return Response(status_code=403)
        if given != key:
            return Response(status_code=401)
        return None

    async def _fetch_hashes(self, request: Request) -> Response:
        query = dict(request.query_params)
        self.requests.append(query)
        refused = self._refused(request, self.fetch_key, self.feedback_key)
        if refused is not None:
            return refused
        if self.fail_after is not None and len(self.requests) > self.fail_after:
            return Response("Service Unavailable", status_code=503)
        try:
            start, size = int(query["startTimestamp"]), int(query.get("pageSize", "800"))
        except (KeyError, ValueError):
            return JSONResponse({"error": "startTimestamp and pageSize are integers"}, status_code=400)
        in_set = sorted((r for r in self.records if r.changed >= start), key=lambda r: r.key)
        after: tuple[int, str, str] | None = None
        if "nextPageToken" in query:
            token = self._tokens.get(query["nextPageToken"])
            if token is None or token.start != start or time.time() - token.issued > self.token_lifetime:
                return JSONResponse({"error": "invalid or expired nextPageToken"}, status_code=400)
            after = token.after
        rest = [r for r in in_set if after is None or r.key > after]
        page, more = rest[: min(size, self.page_size)], len(rest) > min(size, self.page_size)
        next_token = None
        if more and self.stuck and "nextPageToken" in query:
            next_token = query["nextPageToken"]
        elif more:
            next_token = secrets.token_urlsafe(24)
            self._tokens[next_token] = _Token(start, page[-1].key, time.time())
        body = {
            "count": len(page),
            "nextPageToken": next_token,
            "nextSetTimestamp": max((r.changed for r in in_set), default=start),
            "hasMoreRecords": more,
            "hashRecords": [r.as_json() for r in page],
        }
        text = json.dumps(body)
        poisoned = [r for r in page if r.poisoned]
        if poisoned:  # cut inside the poisoned record, as a corrupt answer would be
            text = text[: text.index(json.dumps(poisoned[0].hash_value)) + 10]
        return Response(text, media_type="application/json")

    async def _submit_feedback(self, request: Request) -> Response:
        refused = self._refused(request, self.feedback_key, self.fetch_key)
        if refused is not None:
            return refused
        if self.fail_feedback:
            return Response("Service Unavailable", status_code=503)
        try:
            body = await request.json()
            feedbacks = body["hashFeedbacks"]
            if body["count"] != len(feedbacks):
                raise ValueError("count")
            for item in feedbacks:
                if item["feedbackValue"] not in FEEDBACK_VALUES or not isinstance(item["tags"], list):
                    raise ValueError("feedbackValue")
                if not any(r.hash_value == item["hashValue"] for r in self.records):
                    raise ValueError("hashValue")
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"error": f"bad feedback: {exc}"}, status_code=400)
        for item in feedbacks:
            self.feedback.append(item)
            for record in self.records:
                if record.hash_value == item["hashValue"]:
                    given = {"source": "partner", "feedbackValue": item["feedbackValue"], "tags": item["tags"]}
                    record.feedbacks.append(given)
        return JSONResponse({"count": len(feedbacks)})
