"""An in-memory PLC directory that checks operations like the real one, for tests of code that writes to PLC.

`POST /{did}` accepts an operation only if it is signed by a rotation key of the DID's current state (of the
operation itself for genesis), names the last operation's CID as `prev`, and (genesis) hashes to the DID.
`GET /{did}`, `/{did}/data`, `/{did}/log/last` answer like plc.directory (Multikey documents). `refuse` makes
every submission fail with that message, to test how callers cope with a directory that says no.
`before_update`, if set, is awaited before an update (not a genesis) is applied, e.g. to let a consumer finish
what it received under the old document.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from labeler.identity.plc import PlcState, did_for_genesis, operation_cid, verify_operation
from labeler.identity.plc_directory import PlcDirectory, create_did
from labeler.protocol.crypto import SigningKey

from .server import RunningServer, serve_in_thread


def render_document(did: str, state: PlcState) -> dict[str, Any]:
    return {
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
        "id": did,
        "alsoKnownAs": list(state.also_known_as),
        "verificationMethod": [
            {
                "id": f"{did}#{name}",
                "type": "Multikey",
                "controller": did,
                "publicKeyMultibase": key.removeprefix("did:key:"),
            }
            for name, key in state.verification_methods.items()
        ],
        "service": [
            {"id": f"#{name}", "type": s["type"], "serviceEndpoint": s["endpoint"]}
            for name, s in state.services.items()
        ],
    }


class MemoryPlc:
    def __init__(self) -> None:
        self.logs: dict[str, list[dict[str, Any]]] = {}
        self.refuse: str | None = None
        self.before_update: Callable[[str], Awaitable[None]] | None = None
        self.app = Starlette(
            routes=[
                Route("/{did}/data", self._data),
                Route("/{did}/log/last", self._last),
                Route("/{did}", self._document, methods=["GET"]),
                Route("/{did}", self._submit, methods=["POST"]),
            ]
        )

    def state(self, did: str) -> PlcState:
        return PlcState.from_json(self.logs[did][-1])

    async def _submit(self, request: Request) -> Response:
        did, op = request.path_params["did"], await request.json()
        if self.refuse:
            return _error(self.refuse)
        log = self.logs.get(did)
        if log is None:
            if op.get("prev") is not None or did_for_genesis(op) != did:
                return _error("genesis operation does not match the DID")
            signers = op["rotationKeys"]
        else:
            if op.get("prev") != operation_cid(log[-1]):
                return _error("prev is not the last operation")
            signers = log[-1]["rotationKeys"]
        if not any(verify_operation(op, key) for key in signers):
            return _error("invalid signature")
        if log is not None and self.before_update is not None:
            await self.before_update(did)
        self.logs.setdefault(did, []).append(op)
        return Response(status_code=200)

    def _known(self, request: Request) -> str | None:
        did = request.path_params["did"]
        return did if did in self.logs else None

    async def _document(self, request: Request) -> Response:
        did = self._known(request)
        if did is None:
            return JSONResponse({"message": "DID not registered"}, status_code=404)
        return JSONResponse(render_document(did, self.state(did)))

    async def _data(self, request: Request) -> Response:
        did = self._known(request)
        if did is None:
            return JSONResponse({"message": "DID not registered"}, status_code=404)
        return JSONResponse({"did": did, **self.state(did).to_json()})

    async def _last(self, request: Request) -> Response:
        did = self._known(request)
        if did is None:
            return JSONResponse({"message": "DID not registered"}, status_code=404)
        return JSONResponse(self.logs[did][-1])


def _error(message: str) -> Response:
    return JSONResponse({"message": message}, status_code=400)


@contextlib.contextmanager
def running_memory_plc() -> Iterator[tuple[MemoryPlc, RunningServer]]:
    plc = MemoryPlc()
    with serve_in_thread(plc.app) as server:
        yield plc, server


async def labeler_did(directory: PlcDirectory, rotation: SigningKey, label_did_key: str, endpoint: str) -> str:
    """A new did:plc held by `rotation`, naming `label_did_key` and the labeler service at `endpoint`."""
    state = PlcState(rotation_keys=(rotation.did_key,)).with_labeler(label_did_key, endpoint)
    return await create_did(directory, state, rotation)
