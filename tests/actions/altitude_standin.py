"""A stand-in for Altitude's signal-service API (Jigsaw-Code/altitude `api.yml` and `signal-service/src/api/*.py`),
for the parts the labeler uses, served over real HTTP.

Modelled as the real handlers behave: JSON-schema validation of every body (Draft 2020-12, additional properties
refused, base64 checked) → 400; an IMAGE target whose bytes Pillow cannot open → 400 "Unable to process image
data"; unknown or malformed ids → 404; errors as `{"error": {"code", "message", "status"}}`; ids are 24-hex
ObjectIds; times naive-UTC ISO strings. A case gets decisions as reviews (`POST /cases/{id}/reviews/`, what
Altitude's UI calls), newest last, which the case's `review_history` shows. Altitude has no authentication; a
deployment's proxy may demand a bearer token (`token`) → 401.

Failure modes: `fail_next(n, status)` answers the next n requests with that status (Altitude's 500, a proxy's
502/503); stopping the server refuses connections.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import http
import io
import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from PIL import Image, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_CREATOR = {"type": "object", "properties": {"ip_address": {"type": "string"}}}
TARGET_INPUT = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "description": {"type": "string"},
        "views": {"type": "number"},
        "creator": _CREATOR,
        "client_context": {"type": "string"},
        "content_type": {"type": "string", "enum": ["IMAGE", "TEXT"]},
        "content_bytes": {"type": "string", "contentEncoding": "base64"},
    },
    "required": ["content_bytes", "content_type"],
    "additionalProperties": False,
}
SIGNAL_INPUT = {
    "type": "object",
    "properties": {
        "content": {
            "type": "object",
            "properties": {
                "value": {"type": "string"},
                "type": {"type": "string", "enum": ["HASH_PDQ", "HASH_MD5", "URL"]},
            },
            "required": ["value", "type"],
        },
        "source": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "enum": ["TCAP", "GIFCT", "USER_REPORT"]},
                "author": {"type": "string"},
                "create_time": {"type": "string", "format": "date-time"},
            },
            "required": ["name"],
        },
    },
    "required": ["content"],
    "additionalProperties": False,
}
CASE_INPUT = {
    "type": "object",
    "properties": {
        "signal_ids": {"type": "array", "items": {"type": ["string"]}, "minItems": 1},
        "target_id": {"type": ["string", "null"]},
    },
    "required": ["signal_ids"],
    "additionalProperties": False,
}
REVIEW_INPUT = {
    "type": "object",
    "properties": {"decision": {"type": "string", "enum": ["BLOCK", "APPROVE"]}},
    "required": ["decision"],
    "additionalProperties": False,
}


def _base64(validator: Any, encoding: str, instance: Any, schema: Any) -> Any:
    if encoding == "base64" and isinstance(instance, str):
        try:
            base64.b64decode(instance, validate=True)
        except binascii.Error:
            yield jsonschema.ValidationError(f"'{instance[:20]}' is not a valid base64-encoded string")


_Validator = jsonschema.validators.extend(
    jsonschema.validators.Draft202012Validator, {"contentEncoding": _base64}, format_checker=jsonschema.FormatChecker()
)


class ApiError(Exception):
    def __init__(self, status: int, message: str | None = None) -> None:
        phrase = http.HTTPStatus(status)
        super().__init__(message or phrase.description)
        self.status = status
        self.message = message or phrase.description

    def response(self) -> JSONResponse:
        phrase = http.HTTPStatus(self.status).phrase
        body = {"error": {"code": self.status, "message": self.message, "status": phrase}}
        return JSONResponse(body, status_code=self.status)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None).isoformat()


@dataclass
class Altitude:
    """The stand-in's state and its Starlette app; tests read `targets`, `signals`, `cases` directly."""

    token: str | None = None
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    signals: dict[str, dict[str, Any]] = field(default_factory=dict)
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    _failures: list[int] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(0x65F0_0000_0000_0000_0000_0001))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.app = Starlette(
            routes=[
                Route("/api/targets/", self._create_target, methods=["POST"]),
                Route("/api/targets/{id}", self._get_target, methods=["GET"]),
                Route("/api/signals/", self._create_signal, methods=["POST"]),
                Route("/api/signals/", self._list_signals, methods=["GET"]),
                Route("/api/cases/", self._create_case, methods=["POST"]),
                Route("/api/cases/{id}", self._get_case, methods=["GET"]),
                Route("/api/cases/{id}/reviews/", self._create_review, methods=["POST"]),
            ]
        )

    # --- control, for tests --------------------------------------------------------------------------------------

    def fail_next(self, count: int, status: int = 500) -> None:
        with self.lock:
            self._failures.extend([status] * count)

    def decide(self, case_id: str, decision: str, *, user: str = "moderator@altitude", age: float = 0.0) -> None:
        """A moderator's decision in Altitude's UI, made `age` seconds ago."""
        created = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(seconds=age)
        with self.lock:
            case = self.cases[case_id]
            review = {"id": self._new_id(), "create_time": created.isoformat(), "decision": decision, "user": user}
            case["review_history"] = [*case.get("review_history", []), review]
            case["state"] = "RESOLVED"

    # --- the API ---------------------------------------------------------------------------------------------------

    def _new_id(self) -> str:
        return f"{next(self._ids):024x}"

    async def _guard(self, request: Request, schema: dict[str, Any] | None) -> Any:
        with self.lock:
            self.requests.append((request.method, request.url.path))
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            raise ApiError(failure)
        if self.token is not None and request.headers.get("authorization") != f"Bearer {self.token}":
            raise ApiError(401, "The proxy wants a bearer token")
        if schema is None:
            return None
        try:
            body = await request.json()
        except ValueError:
            body = None
        try:
            _Validator(schema).validate(body)
        except jsonschema.ValidationError as exc:
            raise ApiError(400, exc.message) from None
        return body

    async def _handle(self, request: Request, schema: dict[str, Any] | None, handler: Any) -> Response:
        try:
            body = await self._guard(request, schema)
            with self.lock:
                answer, status = handler(request, body)
        except ApiError as exc:
            return exc.response()
        return JSONResponse(answer, status_code=status)

    def _get(self, table: dict[str, dict[str, Any]], what: str, entity_id: str) -> dict[str, Any]:
        if entity_id not in table:
            raise ApiError(404, f"{what} {entity_id} not found.")
        return table[entity_id]

    async def _create_target(self, request: Request) -> Response:
        def create(request: Request, body: dict[str, Any]) -> tuple[Any, int]:
            data = base64.b64decode(body["content_bytes"])
            if body["content_type"] == "IMAGE":
                try:
                    Image.open(io.BytesIO(data))
                except UnidentifiedImageError:
                    raise ApiError(400, "Unable to process image data") from None
            target: dict[str, Any] = {"id": self._new_id(), "create_time": _now()}
            for key in ("client_context", "title", "description", "views"):
                if body.get(key):
                    target[key] = body[key]
            if body.get("creator", {}).get("ip_address"):
                target["creator"] = {"ip_address": body["creator"]["ip_address"]}
            if body["content_type"] == "IMAGE":
                target["content_bytes"] = body["content_bytes"]
                target["safe_search_scores"] = dict.fromkeys(
                    ("adult", "spoof", "medical", "violence", "racy"), "UNKNOWN"
                )
            self.targets[target["id"]] = target
            return target, 201

        return await self._handle(request, TARGET_INPUT, create)

    async def _get_target(self, request: Request) -> Response:
        target_id = request.path_params["id"]
        return await self._handle(request, None, lambda r, b: (self._get(self.targets, "Target", target_id), 200))

    async def _create_signal(self, request: Request) -> Response:
        def create(request: Request, body: dict[str, Any]) -> tuple[Any, int]:
            content = body["content"]
            source = body.get("source") or {"name": "UNKNOWN"}
            signal = {
                "id": self._new_id(),
                "create_time": source.get("create_time"),
                "content": [{"value": content["value"], "content_type": content["type"]}],
                "sources": [{k: v for k, v in source.items() if k in ("name", "author", "create_time")}],
            }
            self.signals[signal["id"]] = signal
            return signal, 201

        return await self._handle(request, SIGNAL_INPUT, create)

    async def _list_signals(self, request: Request) -> Response:
        return await self._handle(request, None, lambda r, b: (list(self.signals.values()), 200))

    async def _create_case(self, request: Request) -> Response:
        def create(request: Request, body: dict[str, Any]) -> tuple[Any, int]:
            missing = sorted(set(body["signal_ids"]) - set(self.signals))
            if missing:
                raise ApiError(404, f"Signals {missing} not found.")
            target_id = body.get("target_id")
            if target_id:
                self._get(self.targets, "Target", target_id)
            case: dict[str, Any] = {
                "id": self._new_id(),
                "signal_ids": sorted(set(body["signal_ids"])),
                "create_time": _now(),
                "state": "ACTIVE",
                "priority": -1,
                "priority_level": None,
                "confidence": None,
                "severity": None,
                "notes": None,
            }
            if target_id:
                case["target_id"] = target_id
            self.cases[case["id"]] = case
            return case, 201

        return await self._handle(request, CASE_INPUT, create)

    async def _get_case(self, request: Request) -> Response:
        case_id = request.path_params["id"]
        return await self._handle(request, None, lambda r, b: (self._get(self.cases, "Case", case_id), 200))

    async def _create_review(self, request: Request) -> Response:
        case_id = request.path_params["id"]

        def create(request: Request, body: dict[str, Any]) -> tuple[Any, int]:
            case = self._get(self.cases, "Case", case_id)
            review = {"id": self._new_id(), "create_time": _now(), "decision": body["decision"]}
            case["review_history"] = [*case.get("review_history", []), review]
            case["state"] = "RESOLVED"
            return review, 201

        return await self._handle(request, REVIEW_INPUT, create)
