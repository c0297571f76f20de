"""A small stand-in for HMA 2.0 (1.1.7) that speaks its wire format for the endpoints the labeler uses.

Shapes, status codes and message texts follow `hma.md` §1 (observed on a real HMA): string distances in
lookups (`"-"` for `video_md5`), `{}` for no match, plain-text `/status`, `{"message": …}` errors and 422
pydantic-style arrays. Signal types `pdq` and `video_md5` are python-threatexchange's classes, validated and
indexed by them as HMA does: each index is rebuilt from scratch when the content changes, then serialized and
read back, as HMA's indexer stores it in Postgres and its matchers load it. That round trip is what makes a PDQ
index of exactly one hash match nothing (HMA #1318). `/m/lookup` draws one coin per request, and keeps a bank
when its `matching_enabled_ratio` is at least that draw (seeded by `seed`).

Test controls: `loaded` (False → 503 INDEX-NOT-LOADED / "index not yet ready", like a fresh HMA), `down`
(every path answers 503, like a proxy in front of a dead HMA), `index_lag` (seconds before a new signal is
matchable, like HMA's indexer + cache refresh) and `delay` (seconds before any answer, for timeouts).
`serve()` runs the app under real uvicorn on a free loopback port in a background thread.
"""

from __future__ import annotations

import asyncio
import io
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
from threatexchange.signal_type.index import SignalTypeIndex
from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.signal import PdqSignal
from threatexchange.signal_type.signal_base import SignalType

_BANK_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_PYDANTIC_URL = "https://errors.pydantic.dev/2.11/v/missing"
SIGNAL_TYPES: dict[str, type[SignalType]] = {"pdq": PdqSignal, "video_md5": VideoMD5Signal}


@dataclass
class _Content:
    id: int
    bank: str
    signals: dict[str, str]
    note: str | None
    added_at: float


@dataclass
class _Index:
    """One signal type's index as HMA's matchers hold it: the content ids it was built from, read back."""

    built_from: frozenset[int]
    index: SignalTypeIndex[int]


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
        self._indexes: dict[str, _Index] = {}
        self._app = Starlette(
            routes=[
                Route("/status", self._status),
                Route("/status/live", self._live),
                Route("/m/lookup", self._lookup),
                Route("/m/raw_lookup", self._raw_lookup),
                Route("/m/index/status", self._index_status),
                Route("/c/banks", self._banks_get, methods=["GET"]),
                Route("/c/banks", self._banks_post, methods=["POST"]),
                Route("/c/bank/{bank}", self._bank_delete, methods=["DELETE"]),
                Route("/c/bank/{bank}/signal", self._signal_post, methods=["POST"]),
                Route("/c/bank/{bank}/content/{content_id:int}", self._content_get, methods=["GET"]),
                Route("/c/bank/{bank}/content/{content_id:int}", self._content_delete, methods=["DELETE"]),
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

    def delete_bank(self, name: str) -> None:
        with self._lock:
            self._banks.pop(name, None)
            for content_id in [c.id for c in self._content.values() if c.bank == name]:
                del self._content[content_id]

    def delete_content(self, content_id: int) -> None:
        with self._lock:
            self._content.pop(content_id, None)

    def add_signal(self, bank: str, value: str, note: str | None = None, *, signal_type: str = "pdq") -> int:
        return self.add_content(bank, {signal_type: value}, note)

    def add_content(self, bank: str, signals: dict[str, str], note: str | None = None) -> int:
        with self._lock:
            content_id = self._next_id
            self._next_id += 1
            self._content[content_id] = _Content(content_id, bank, dict(signals), note, time.monotonic())
            return content_id

    def contents(self, bank: str | None = None) -> list[tuple[int, str, dict[str, str], str | None]]:
        """(id, bank, signals, note) of every content item (of `bank`), in id order."""
        with self._lock:
            return [
                (c.id, c.bank, dict(c.signals), c.note)
                for c in sorted(self._content.values(), key=lambda c: c.id)
                if bank is None or c.bank == bank
            ]

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
        hits = self._query(q["signal_type"], q["signal"], q.get("banks"))
        if isinstance(hits, Response):
            return hits
        coinflip = random.Random(q.get("seed")).random()  # one draw for the whole request, as HMA
        out: dict[str, list[dict[str, Any]]] = {}
        for content, distance in hits:
            if self._banks.get(content.bank, 0.0) >= coinflip:
                out.setdefault(content.bank, []).append({"bank_content_id": content.id, "distance": distance})
        return JSONResponse(out)

    async def _raw_lookup(self, request: Request) -> Response:
        q = request.query_params
        missing = [f for f in ("signal_type", "signal") if f not in q]
        if missing:
            return _missing(missing, dict(q))
        hits = self._query(q["signal_type"], q["signal"], q.get("banks"))
        if isinstance(hits, Response):
            return hits
        if q.get("include_distance", "false").lower() == "true":
            return JSONResponse({"matches": [{"bank_content_id": c.id, "distance": d} for c, d in hits]})
        return JSONResponse({"matches": [c.id for c, _ in hits]})

    async def _index_status(self, request: Request) -> Response:
        """The stored index per signal type: present, built_to and size (its hash count)."""
        with self._lock:
            self._refresh_indexes()
            status = {name: {"present": False, "built_to": -1, "size": 0} for name in SIGNAL_TYPES}
            for name, index in self._indexes.items():
                status[name] = {"present": True, "built_to": int(time.time()), "size": len(index.built_from)}
        return JSONResponse(status)

    def _query(self, signal_type: str, signal: str, banks: str | None) -> list[tuple[_Content, str]] | Response:
        """Matches visible to the matcher now, nearest first, with HMA's distance strings; or an error answer."""
        kind = SIGNAL_TYPES.get(signal_type)
        if kind is None:
            return _message(400, f"No such SignalType '{signal_type}'")
        try:
            signal = kind.validate_signal_str(signal)
        except Exception as e:  # HMA: abort(400, f"invalid signal: {e}")
            return _message(400, f"invalid signal: {e}")
        with self._lock:
            if not self.loaded:
                return _message(503, "index not yet ready")
            self._refresh_indexes()
            index = self._indexes.get(signal_type)
            wanted = set(banks.split(",")) if banks else None
            hits = []
            for match in index.index.query(signal) if index is not None else []:
                content = self._content.get(match.metadata)
                if content is not None and (wanted is None or content.bank in wanted):
                    hits.append((content, match.similarity_info.pretty_str()))
        return sorted(hits, key=lambda h: h[0].id)

    def _refresh_indexes(self) -> None:
        """Rebuild a signal type's index from scratch when its visible content changed, store it (serialize) and
        load it back, as HMA's indexer and index cache do."""
        cutoff = time.monotonic() - self.index_lag
        for name, kind in SIGNAL_TYPES.items():
            visible = frozenset(c.id for c in self._content.values() if name in c.signals and c.added_at <= cutoff)
            current = self._indexes.get(name)
            if current is not None and current.built_from == visible:
                continue
            if not visible and current is None:
                continue
            built = kind.get_index_cls().build([(self._content[i].signals[name], i) for i in sorted(visible)])
            stored = io.BytesIO()
            built.serialize(stored)
            stored.seek(0)
            self._indexes[name] = _Index(visible, kind.get_index_cls().deserialize(stored))

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
        self.delete_bank(request.path_params["bank"])
        return JSONResponse({"message": "Done"})

    async def _signal_post(self, request: Request) -> Response:
        bank = request.path_params["bank"]
        if bank not in self._banks:
            return _message(404, f"bank '{bank}' not found")
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _message(400, "Request input was not a dict")
        note = body.get("note") or None
        if note is not None and not isinstance(note, str):
            return _message(400, "note should be a string")
        if note is not None and len(note) > 255:
            return _message(400, "note must be at most 255 characters")
        signals = {k: v for k, v in body.items() if k != "note"}
        if not signals:
            return _message(400, "No signals given")
        valid = {}
        for signal_type, value in signals.items():
            kind = SIGNAL_TYPES.get(signal_type)
            if kind is None:
                return _message(400, f"No such signal type {signal_type}")
            try:
                valid[signal_type] = kind.validate_signal_str(value)
            except Exception as e:
                return _message(400, f"Invalid {signal_type} signal: {e}")
        content_id = self.add_content(bank, valid, note)
        return JSONResponse({"id": content_id, "signals": valid})

    async def _content_get(self, request: Request) -> Response:
        """The content item whatever bank it is in (HMA checks only that the bank in the path exists)."""
        bank, content_id = request.path_params["bank"], request.path_params["content_id"]
        with self._lock:
            if bank not in self._banks:
                return _message(404, f"bank '{bank}' not found")
            content = self._content.get(content_id)
            if content is None:
                return _message(404, f"content '{content_id}' not found")
            out: dict[str, Any] = {
                "id": content.id,
                "disable_until_ts": 1,
                "original_media_uri": None,
                "bank": {"name": content.bank, "matching_enabled_ratio": self._banks.get(content.bank, 0.0)},
            }
            if request.query_params.get("include_signals", "false").lower() == "true":
                out["signals"] = dict(content.signals)
            if content.note is not None:
                out["note"] = content.note
        return JSONResponse(out)

    async def _content_delete(self, request: Request) -> Response:
        """`{"deleted": 1}`, or 0 when there is no such content; like GET, any bank's content."""
        bank, content_id = request.path_params["bank"], request.path_params["content_id"]
        with self._lock:
            if bank not in self._banks:
                return _message(404, f"bank '{bank}' not found")
            deleted = content_id in self._content
        self.delete_content(content_id)
        return JSONResponse({"deleted": int(deleted)})


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
