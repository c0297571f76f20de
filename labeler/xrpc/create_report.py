"""`com.atproto.moderation.createReport` (protocol.md §4): a user's report, usually proxied by their PDS.

The reporter is the verified `iss` of the service token (never a field of the body); the body is checked
against the lexicon and our declaration, stored in the report queue, and echoed in the lexicon's output shape.
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse

from labeler.service import Labeler
from labeler.xrpc.body import read_json_object
from labeler.xrpc.service_auth import verify_service_auth

CREATE_REPORT: Final = "com.atproto.moderation.createReport"


async def create_report(request: Request) -> JSONResponse:
    labeler: Labeler = request.app.state.labeler
    auth = await verify_service_auth(labeler, request.headers.get("authorization"), CREATE_REPORT)
    body = await read_json_object(request)
    report = await labeler.reports.submit(body, auth.iss)
    return JSONResponse(report.to_output())
