"""A small PDS stand-in for pipeline tests: `com.atproto.sync.getBlob` and `com.atproto.repo.getRecord` over
real HTTP, for fake DIDs registered on the fake PLC.

Test controls: `blobs` (did → cid → bytes), `records` (at:// URI → (cid, value)), `tamper` (cid → bytes served
instead of the real ones: a CID mismatch), `status` (a fixed status for every request, e.g. 503), `delay`.
`hits` counts getBlob requests per CID.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import libipld
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support.fake_plc import FakePlc, did_document, new_plc_did
from support.server import RunningServer, serve_in_thread

from labeler.pipeline.jobs import ImageRef


def blob_cid(data: bytes) -> str:
    """CIDv1, raw codec, sha2-256: how a PDS names a blob (`bafkrei…`)."""
    return str(libipld.encode_cid(b"\x01\x55\x12\x20" + hashlib.sha256(data).digest()))


class BlobServer:
    def __init__(self) -> None:
        self.blobs: dict[str, dict[str, bytes]] = {}
        self.records: dict[str, tuple[str, Any]] = {}
        self.tamper: dict[str, bytes] = {}
        self.status: int | None = None
        self.delay = 0.0
        self.hits: Counter[str] = Counter()
        self.app = Starlette(
            routes=[
                Route("/xrpc/com.atproto.sync.getBlob", self._get_blob),
                Route("/xrpc/com.atproto.repo.getRecord", self._get_record),
            ]
        )

    def add(self, did: str, data: bytes) -> ImageRef:
        cid = blob_cid(data)
        self.blobs.setdefault(did, {})[cid] = data
        return ImageRef(did, cid, "image/png")

    async def _get_blob(self, request: Request) -> Response:
        did, cid = request.query_params.get("did", ""), request.query_params.get("cid", "")
        self.hits[cid] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status is not None:
            return JSONResponse({"error": "InternalServerError", "message": "down"}, status_code=self.status)
        data = self.tamper.get(cid) or self.blobs.get(did, {}).get(cid)
        if data is None:
            return JSONResponse({"error": "BlobNotFound", "message": "Blob not found"}, status_code=400)
        return Response(data, media_type="application/octet-stream")

    async def _get_record(self, request: Request) -> Response:
        q = request.query_params
        uri = f"at://{q.get('repo')}/{q.get('collection')}/{q.get('rkey')}"
        if self.status is not None:
            return JSONResponse({"error": "InternalServerError"}, status_code=self.status)
        if uri not in self.records:
            return JSONResponse({"error": "RecordNotFound", "message": "Could not locate record"}, status_code=400)
        cid, value = self.records[uri]
        return JSONResponse({"uri": uri, "cid": cid, "value": value})


class PdsWorld:
    """A fake PLC and one PDS port; accounts registered on the PLC point at the PDS."""

    def __init__(self, plc: FakePlc, plc_server: RunningServer, pds_port: int) -> None:
        self.plc = plc
        self.plc_url = plc_server.url
        self.pds_port = pds_port
        self.pds = BlobServer()

    @property
    def pds_url(self) -> str:
        return f"http://127.0.0.1:{self.pds_port}"

    def account(self) -> str:
        did = new_plc_did()
        self.plc.put(did, did_document(did, pds=self.pds_url))
        return did

    @contextlib.contextmanager
    def pds_running(self) -> Iterator[RunningServer]:
        """Serve the PDS on its fixed port until the block exits (outside it, connections are refused)."""
        with serve_in_thread(self.pds.app, port=self.pds_port) as server:
            yield server


def post_record(images: list[ImageRef]) -> dict[str, Any]:
    """An app.bsky.feed.post record with an images embed, as getRecord returns it (JSON)."""
    return {
        "$type": "app.bsky.feed.post",
        "text": "look",
        "createdAt": "2026-11-22T00:00:00.000Z",
        "embed": {
            "$type": "app.bsky.embed.images",
            "images": [
                {
                    "alt": "",
                    "image": {"$type": "blob", "ref": {"$link": i.blob_cid}, "mimeType": "image/png", "size": 1},
                }
                for i in images
            ],
        },
    }
