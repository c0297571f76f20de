"""A PDS stand-in that only serves records (`com.atproto.repo.getRecord`), e.g. a labeler's declaration."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .server import RunningServer, serve_in_thread


class FakePds:
    def __init__(self) -> None:
        #: (repo DID, collection, rkey) → record value
        self.records: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.app = Starlette(routes=[Route("/xrpc/com.atproto.repo.getRecord", self._get_record)])

    async def _get_record(self, request: Request) -> JSONResponse:
        q = request.query_params
        key = (q.get("repo", ""), q.get("collection", ""), q.get("rkey", ""))
        value = self.records.get(key)
        if value is None:
            return JSONResponse({"error": "RecordNotFound", "message": "Could not locate record"}, status_code=400)
        return JSONResponse({"uri": f"at://{key[0]}/{key[1]}/{key[2]}", "cid": "bafyreifake", "value": value})


@contextlib.contextmanager
def running_fake_pds() -> Iterator[tuple[FakePds, RunningServer]]:
    pds = FakePds()
    with serve_in_thread(pds.app) as server:
        yield pds, server
