"""A PLC directory client, and the two things an operator-held rotation key does with it: create and update a DID.

The directory's API: `GET /{did}/data` (current state), `GET /{did}/log/last` (the last operation, whose CID
the next one names as `prev`) and `POST /{did}` (submit an operation). Every failure leaves as `PlcError` with
a message that says which directory and what it answered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import httpx

from labeler.identity.plc import PlcError, PlcState, did_for_genesis, operation_cid, sign_operation
from labeler.protocol.crypto import SigningKey

DEFAULT_TIMEOUT: Final = 10.0
MAX_ERROR_TEXT: Final = 300


class PlcDirectory:
    """One PLC directory; close with `aclose()` or use as an async context manager."""

    def __init__(
        self, url: str, *, timeout: float = DEFAULT_TIMEOUT, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.url, timeout=timeout, transport=transport, follow_redirects=False, trust_env=False
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> PlcDirectory:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def data(self, did: str) -> PlcState:
        """The DID's current state (rotation keys, verification methods, handles, services)."""
        return PlcState.from_json(await self._get_json(f"/{did}/data"))

    async def last_operation(self, did: str) -> dict[str, Any]:
        return await self._get_json(f"/{did}/log/last")

    async def submit(self, did: str, operation: dict[str, Any]) -> None:
        response = await self._request("POST", f"/{did}", json=operation)
        if response.status_code != 200:
            raise PlcError(f"the PLC directory {self.url} refused the operation for {did}: {_explain(response)}")

    async def _get_json(self, path: str) -> dict[str, Any]:
        response = await self._request("GET", path)
        if response.status_code != 200:
            raise PlcError(f"GET {self.url}{path}: {_explain(response)}")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise PlcError(f"GET {self.url}{path}: the answer is not a JSON object")
        return body

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise PlcError(f"cannot reach the PLC directory {self.url}: {type(exc).__name__} {exc}".strip()) from None


def _explain(response: httpx.Response) -> str:
    try:
        message = response.json().get("message")
    except (ValueError, AttributeError):
        message = None
    return f"HTTP {response.status_code} {message or response.text[:MAX_ERROR_TEXT]}".strip()


async def create_did(directory: PlcDirectory, state: PlcState, rotation_key: SigningKey) -> str:
    """Sign and submit a genesis operation; returns the new did:plc."""
    genesis = sign_operation(state.operation(prev=None), rotation_key)
    did = did_for_genesis(genesis)
    await directory.submit(did, genesis)
    return did


async def update_did(
    directory: PlcDirectory,
    did: str,
    rotation_key: SigningKey,
    change: Callable[[PlcState], PlcState],
    *,
    before_submit: Callable[[], Awaitable[None]] | None = None,
) -> PlcState:
    """Apply `change` to the DID's current state, signed by `rotation_key` after the last operation.
    `before_submit` runs just before the operation is submitted (a key rotation holds signing there)."""
    current = await directory.data(did)
    if rotation_key.did_key not in current.rotation_keys:
        raise PlcError(f"{rotation_key.did_key} is not a rotation key of {did} (it has {list(current.rotation_keys)})")
    prev = operation_cid(await directory.last_operation(did))
    wanted = change(current)
    operation = sign_operation(wanted.operation(prev=prev), rotation_key)
    if before_submit is not None:
        await before_submit()
    await directory.submit(did, operation)
    return wanted
