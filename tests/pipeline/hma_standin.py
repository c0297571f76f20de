"""A small stand-in for HMA 2.0 (1.1.7) that speaks its wire format for the endpoints the labeler uses.

Shapes, status codes and message texts follow `hma.md` §1 (observed on a real HMA): string distances in
lookups, `{}` for no match, plain-text `/status`, `{"message": …}` errors and 422 pydantic-style arrays.
Matching uses python-threatexchange's `PDQIndex`, the index HMA itself builds (≤ 31 inclusive).

Test controls: `loaded` (False → 503 INDEX-NOT-LOADED / "index not yet ready", like a fresh HMA), `down`
(every path answers 503, like a proxy in front of a dead HMA), `index_lag` (seconds before a new signal is
matchable, like HMA's indexer + cache refresh) and `delay` (seconds before any answer, for timeouts).
`serve()` runs the app under real uvicorn on a free loopback port in a background thread.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from threatexchange.signal_type.pdq.pdq_index import PDQIndex

_BANK_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_PDQ = re.compile(r"[0-9a-f]{64}")
_PYDANTIC_URL = "https://errors.pydantic.dev/2.11/v/missing"


@dataclass
class _Content:
    id: int
    bank: str
    pdq: str
    note: str | None
    added_at: float


def _message(status: int, text: str) -> JSONResponse:
    return JSONResponse({"message": text}, status_code=status)


def _missing(fields: list[str], given: dict[str, Any]) -> JSONResponse:
    """flask-openapi3's 422: a JSON array of pydantic errors."""
    errors = [
        {"type": "missing", "loc": [f], "msg": "Field required", "input": given, "url": _PYDANTIC_URL} for f in fields
    ]
    return JSONResponse(errors, status_code=422)


class HmaStandin:
    """The app plus its state and test controls; thread-safe, since tests poke it while uvicorn serves."""

    def __init__(self, *, loaded: bool = True, index_lag: float = 0.0) -> None:
        self.loaded = loaded
        self.down = False
        self.index_lag = index_lag
        self.delay = 0.0
        self.lookups = 0
        self._lock = threading.Lock()
        self._banks: dict[str, float] = {}
        self._content: dict[int, _Content] = {}
        self._next_id = 1
        self._index: PDQIndex[int] | None = None
        self._indexed: frozenset[int] = frozenset()
        self._app = Starlette(
            routes=[
                Route("/status", self._status),
                Route("/status/live", self._live),
                Route("/m/lookup", self._lookup),
                Route("/m/raw_lookup", self._raw_lookup),
                Route("/c/banks", self._banks_get, methods=["GET"]),
                Route("/c/banks", self._banks_post, methods=["POST"]),
                Route("/c/bank/{bank}", self._bank_delete, methods=["DELETE"]),
                Route("/c/bank/{bank}/signal", self._signal_post, methods=["POST"]),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.down:
                await PlainTextResponse("Service Unavailable", status_code=503)(scope, receive, send)
                return
        await self._app(scope, receive, send)

    # -- direct controls (no HTTP) --

    def create_bank(self, name: str, enabled_ratio: float = 1.0) -> None:
        with self._lock:
            self._banks[name] = enabled_ratio

    def add_signal(self, bank: str, pdq: str, note: str | None = None) -> int:
        with self._lock:
            content_id = self._next_id
            self._next_id += 1
            self._content[content_id] = _Content(content_id, bank, pdq, note, time.monotonic())
            return content_id

    # -- core --

    async def _status(self, request: Request) -> Response:
        if not self.loaded:
            return PlainTextResponse("INDEX-NOT-LOADED", status_code=503)
        return PlainTextResponse("I-AM-ALIVE")

    async def _live(self, request: Request) -> Response:
        return PlainTextResponse("I-AM-ALIVE")

    # -- matching --

    async def _lookup(self, request: Request) -> Response:
        q = request.query_params
        if "signal_type" not in q and "url" in q:
            return _message(403, "Hashing is disabled, missing role")
        if "signal_type" not in q or "signal" not in q:
            return _message(400, "Either url or both signal and signal_type are required")
        error = self._check_signal(q["signal_type"], q["signal"])
        if error is not None:
            return error
        hits = self._query(q["signal"], q.get("banks"))
        if hits is None:
            return _message(503, "index not yet ready")
        coin = random.Random(q.get("seed"))
        enabled: dict[str, bool] = {}  # one coin flip per bank: kept if ratio ≥ random(), never at 0
        out: dict[str, list[dict[str, Any]]] = {}
        for content, distance in hits:
            if content.bank not in enabled:
                ratio = self._banks.get(content.bank, 0.0)
                enabled[content.bank] = ratio > 0 and ratio >= coin.random()
            if enabled[content.bank]:
                hit = {"bank_content_id": content.id, "distance": str(distance)}
                out.setdefault(content.bank, []).append(hit)
        return JSONResponse(out)

    async def _raw_lookup(self, request: Request) -> Response:
        q = request.query_params
        missing = [f for f in ("signal_type", "signal") if f not in q]
        if missing:
            return _missing(missing, dict(q))
        error = self._check_signal(q["signal_type"], q["signal"])
        if error is not None:
            return error
        hits = self._query(q["signal"], q.get("banks"))
        if hits is None:
            return _message(503, "index not yet ready")
        if q.get("include_distance", "false").lower() == "true":
            return JSONResponse({"matches": [{"bank_content_id": c.id, "distance": str(d)} for c, d in hits]})
        return JSONResponse({"matches": [c.id for c, _ in hits]})

    def _check_signal(self, signal_type: str, signal: str) -> Response | None:
        if signal_type != "pdq":
            return _message(400, f"No such SignalType '{signal_type}'")
        if _PDQ.fullmatch(signal) is None:
            return _message(400, "invalid signal: invalid PDQ hash")
        return None

    def _query(self, signal: str, banks: str | None) -> list[tuple[_Content, int]] | None:
        """Matches visible to the matcher now, or None while the index is not loaded."""
        with self._lock:
            if not self.loaded:
                return None
            index = self._refresh_index()
            wanted = set(banks.split(",")) if banks else None
            hits = []
            for match in index.query(signal) if index is not None else []:
                content = self._content.get(match.metadata)
                if content is not None and (wanted is None or content.bank in wanted):
                    hits.append((content, int(match.similarity_info.distance)))
        return sorted(hits, key=lambda h: (h[1], h[0].id))

    def _refresh_index(self) -> PDQIndex[int] | None:
        """Rebuild from scratch when the visible set changed, as HMA's indexer does."""
        cutoff = time.monotonic() - self.index_lag
        visible = frozenset(c.id for c in self._content.values() if c.added_at <= cutoff)
        if visible != self._indexed:
            entries = [(self._content[i].pdq, i) for i in sorted(visible)]
            self._index = PDQIndex.build(entries) if entries else None
            self._indexed = visible
        return self._index

    # -- curation --

    async def _banks_get(self, request: Request) -> Response:
        with self._lock:
            banks = [{"name": n, "matching_enabled_ratio": r} for n, r in self._banks.items()]
        return JSONResponse(banks)

    async def _banks_post(self, request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict) or "name" not in body:
            return _missing(["name"], body if isinstance(body, dict) else {})
        name = body["name"]
        ratio = float(body.get("enabled_ratio", 1.0))
        if not isinstance(name, str) or _BANK_NAME.fullmatch(name) is None:
            return _message(400, "Bank names must be UPPER_WITH_UNDERSCORE")
        with self._lock:
            if name in self._banks:
                return _message(403, "Bank already exists")
            self._banks[name] = ratio
        return JSONResponse({"matching_enabled_ratio": ratio, "name": name}, status_code=201)

    async def _bank_delete(self, request: Request) -> Response:
        """Cascades to the bank's content; 200 even when the bank does not exist, as in HMA."""
        bank = request.path_params["bank"]
        with self._lock:
            self._banks.pop(bank, None)
            for content_id in [c.id for c in self._content.values() if c.bank == bank]:
                del self._content[content_id]
        return JSONResponse({"message": "Done"})

    async def _signal_post(self, request: Request) -> Response:
        bank = request.path_params["bank"]
        if bank not in self._banks:
            return _message(404, f"bank '{bank}' not found")
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _message(400, "Request input was not a dict")
        note = body.get("note")
        signals = {k: v for k, v in body.items() if k != "note"}
        if not signals:
            return _message(400, "No signals given")
        for signal_type, value in signals.items():
            if signal_type != "pdq":
                return _message(400, f"No such signal type {signal_type}")
            if not isinstance(value, str) or _PDQ.fullmatch(value) is None:
                return _message(400, "Invalid pdq signal: invalid PDQ hash")
        if note is not None and len(str(note)) > 255:
            return _message(400, "note must be at most 255 characters")
        content_id = self.add_signal(bank, signals["pdq"], note)
        return JSONResponse({"id": content_id, "signals": signals})


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run `app` under uvicorn on 127.0.0.1:<free port> in a thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", loop="asyncio", http="h11", ws="none", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("HMA stand-in did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
