"""Local stand-ins for a repo firehose and a Jetstream v1 host, and the bytes they send.

`#commit` frames are real: DAG-CBOR header + body encoded with libipld, records in a CAR written by the tiny
writer below (the SDK has none, sdk-notes §2). Jetstream events are v1 JSON. One `StreamStandin` serves both
paths; the test appends events (thread-safe) and each connection sends the ones after its cursor, then waits
for more. Scripted faults: a garbage frame, a normal close after N frames, an error frame for a future cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import libipld
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from support.server import serve_in_thread

POST = "app.bsky.feed.post"
DAG_CBOR, RAW = 0x71, 0x55


def cid_bytes(data: bytes, codec: int = DAG_CBOR) -> bytes:
    """Binary CIDv1 (sha256) of `data`, as libipld writes and reads links."""
    return bytes((0x01, codec, 0x12, 0x20)) + hashlib.sha256(data).digest()


def cid_str(cid: bytes) -> str:
    return str(libipld.encode_cid(cid))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def write_car(root: bytes, blocks: dict[bytes, bytes]) -> bytes:
    """A CARv1: varint-prefixed header, then varint-prefixed (cid + block) sections."""
    header = libipld.encode_dag_cbor({"version": 1, "roots": [root]})
    out = bytearray(_varint(len(header)) + header)
    for cid, data in blocks.items():
        out += _varint(len(cid) + len(data)) + cid + data
    return bytes(out)


def blob_cid(image: bytes) -> str:
    return cid_str(cid_bytes(image, RAW))


def post_record(*blobs: bytes, text: str = "", link_form: bool = False, mime: str = "image/png") -> dict[str, Any]:
    """A post whose images embed carries a blob per item of `blobs` (image bytes); `link_form` → JSON `$link`."""
    record: dict[str, Any] = {"$type": POST, "text": text, "createdAt": "2026-01-01T00:00:00.000Z"}
    if blobs:
        images = []
        for data in blobs:
            cid = cid_bytes(data, RAW)
            ref: Any = {"$link": cid_str(cid)} if link_form else cid
            images.append({"alt": "", "image": {"$type": "blob", "ref": ref, "mimeType": mime, "size": len(data)}})
        record["embed"] = {"$type": "app.bsky.embed.images", "images": images}
    return record


@dataclass(frozen=True)
class Op:
    action: str  # create | update | delete
    path: str  # collection/rkey
    record: dict[str, Any] | None = None


def commit_frame(
    seq: int, repo: str, ops: list[Op], *, extra_blocks: int = 0, time: str = "2026-01-01T00:00:00.000Z"
) -> tuple[bytes, dict[str, str]]:
    """A `#commit` frame and {path: record CID} for its create/update ops; `time` is when the relay sequenced it."""
    blocks: dict[bytes, bytes] = {}
    wire_ops: list[dict[str, Any]] = []
    cids: dict[str, str] = {}
    for op in ops:
        cid = None
        if op.record is not None:
            data = libipld.encode_dag_cbor(op.record)
            cid = cid_bytes(data)
            blocks[cid] = data
            cids[op.path] = cid_str(cid)
        wire_ops.append({"action": op.action, "path": op.path, "cid": cid})
    for i in range(extra_blocks):  # stand-ins for MST nodes
        data = libipld.encode_dag_cbor({"l": None, "e": [], "i": i})
        blocks[cid_bytes(data)] = data
    commit = libipld.encode_dag_cbor({"did": repo, "version": 3, "rev": f"rev{seq}", "data": None, "sig": b"s" * 64})
    root = cid_bytes(commit)
    blocks[root] = commit
    body = {
        "seq": seq, "rebase": False, "tooBig": False, "repo": repo, "commit": root, "rev": f"rev{seq}",
        "since": None, "blocks": write_car(root, blocks), "ops": wire_ops, "blobs": [],
        "time": time,
    }  # fmt: skip
    return libipld.encode_dag_cbor({"op": 1, "t": "#commit"}) + libipld.encode_dag_cbor(body), cids


def message_frame(seq: int, kind: str, body: dict[str, Any]) -> bytes:
    return libipld.encode_dag_cbor({"op": 1, "t": kind}) + libipld.encode_dag_cbor({"seq": seq, **body})


def info_frame(name: str, message: str) -> bytes:
    """An `#info` frame: no seq (it is not persisted)."""
    body = libipld.encode_dag_cbor({"name": name, "message": message})
    return libipld.encode_dag_cbor({"op": 1, "t": "#info"}) + body


def error_frame(error: str, message: str) -> bytes:
    return libipld.encode_dag_cbor({"op": -1}) + libipld.encode_dag_cbor({"error": error, "message": message})


def jetstream_event(
    time_us: int,
    did: str,
    rkey: str,
    record: dict[str, Any] | None,
    *,
    operation: str = "create",
    collection: str = POST,
) -> str:
    """A v1 Jetstream commit event (JSON), `record` in its JSON form (`$link`)."""
    commit: dict[str, Any] = {"rev": f"r{time_us}", "operation": operation, "collection": collection, "rkey": rkey}
    if record is not None:
        commit["record"] = record
        commit["cid"] = cid_str(cid_bytes(libipld.encode_dag_cbor(_links_to_bytes(record))))
    return json.dumps({"did": did, "time_us": time_us, "kind": "commit", "commit": commit})


def _links_to_bytes(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$link"}:
            return _cid_from_str(value["$link"])
        return {k: _links_to_bytes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_links_to_bytes(v) for v in value]
    return value


def _cid_from_str(text: str) -> bytes:
    info = libipld.decode_cid(text)
    return bytes((0x01, info["codec"], 0x12, 0x20)) + bytes(info["hash"]["digest"])


@dataclass
class Event:
    cursor: int
    payload: bytes | str


@dataclass
class StreamStandin:
    """The events a stand-in serves and what its clients asked for."""

    events: list[Event] = field(default_factory=list)
    connections: list[dict[str, str]] = field(default_factory=list)
    # Scripted faults, consumed once each (the next connection behaves normally).
    close_after: int | None = None  # close normally (1000) after this many frames
    garbage_after: int | None = None  # send a non-CBOR frame after this many frames
    lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, cursor: int, payload: bytes | str) -> None:
        with self.lock:
            self.events.append(Event(cursor, payload))

    @property
    def head(self) -> int:
        with self.lock:
            return max((e.cursor for e in self.events), default=0)

    def _after(self, cursor: int | None, start: int) -> list[Event]:
        with self.lock:
            pending = self.events[start:]
        return [e for e in pending if cursor is None or e.cursor > cursor]

    def _take(self, name: str) -> int | None:
        with self.lock:
            value = getattr(self, name)
            setattr(self, name, None)
            return value

    async def serve(self, websocket: WebSocket, *, future_cursor_error: bool) -> None:
        await websocket.accept()
        params: dict[str, str] = {}
        for key, value in websocket.query_params.multi_items():  # repeated keys joined with ","
            params[key] = f"{params[key]},{value}" if key in params else value
        with self.lock:
            self.connections.append(params)
            start = 0 if "cursor" in params else len(self.events)
        raw_cursor = params.get("cursor")
        cursor = int(raw_cursor) if raw_cursor else None
        if future_cursor_error and cursor is not None and cursor > self.head:
            await websocket.send_bytes(error_frame("FutureCursor", "Cursor in the future."))
            await websocket.close(1008)
            return
        close_after, garbage_after = self._take("close_after"), self._take("garbage_after")
        sent = 0
        try:
            while True:
                batch = self._after(cursor, start)
                with self.lock:
                    start = len(self.events)
                for event in batch:
                    if garbage_after is not None and sent == garbage_after:
                        await websocket.send_bytes(b"\xff\x00 not cbor")
                        garbage_after = None
                    if close_after is not None and sent == close_after:
                        await websocket.close(1000)
                        return
                    if isinstance(event.payload, bytes):
                        await websocket.send_bytes(event.payload)
                    else:
                        await websocket.send_text(event.payload)
                    cursor, sent = event.cursor, sent + 1
                with contextlib.suppress(TimeoutError):  # a receive notices the client leaving
                    if (await asyncio.wait_for(websocket.receive(), 0.01))["type"] == "websocket.disconnect":
                        return
        except (WebSocketDisconnect, RuntimeError):
            return

    def app(self) -> Starlette:
        async def repos(websocket: WebSocket) -> None:
            await self.serve(websocket, future_cursor_error=True)

        async def jetstream(websocket: WebSocket) -> None:
            await self.serve(websocket, future_cursor_error=False)

        return Starlette(
            routes=[
                WebSocketRoute("/xrpc/com.atproto.sync.subscribeRepos", repos),
                WebSocketRoute("/subscribe", jetstream),
            ]
        )


@contextmanager
def serve_standin(standin: StreamStandin) -> Iterator[str]:
    """Serve the stand-in on loopback; yields its ws:// base URL."""
    with serve_in_thread(standin.app()) as server:
        yield server.ws_url


class MemoryJobs:
    """A JobSink that keeps what it was given (idempotent like JobQueue); `fail` makes enqueue raise."""

    def __init__(self) -> None:
        self.specs: list[Any] = []
        self.keys: set[tuple[str, str | None, str]] = set()
        self.calls = 0
        self.fail = 0

    async def enqueue(self, specs: Any) -> int:
        self.calls += 1
        if self.fail:
            self.fail -= 1
            raise ConnectionError("database down")
        added = 0
        for spec in specs:
            key = (spec.subject_uri, spec.subject_cid, spec.image.blob_cid)
            if key not in self.keys:
                self.keys.add(key)
                self.specs.append(spec)
                added += 1
        return added


class MemoryCursors:
    """Cursors in a dict, with a count of writes; `fail_reads` makes `get` raise."""

    def __init__(self, values: dict[str, str] | None = None) -> None:
        self.values = dict(values or {})
        self.writes = 0
        self.fail_reads = 0

    async def get(self, name: str) -> str | None:
        if self.fail_reads:
            self.fail_reads -= 1
            raise ConnectionError("database down")
        return self.values.get(name)

    async def set(self, name: str, value: str, event_time: float | None = None) -> None:
        self.writes += 1
        self.values[name] = value


async def eventually(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:  # noqa: ASYNC109
    """Poll `predicate()` until true or fail after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
