"""A logged-in session on the labeler account's PDS (the `atproto` SDK's AsyncClient), with readable errors.

Used to publish the declaration and to change a did:plc through the PDS. The SDK client's HTTP pool is always
closed on exit. SDK exceptions leave as `PdsError` whose message names the step and what the PDS said.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import httpx

from labeler.identity.resolver import IdentityError

if TYPE_CHECKING:
    from atproto import AsyncClient
    from atproto_client.exceptions import RequestErrorBase

DEFAULT_TIMEOUT: Final = 15.0


class PdsError(IdentityError):
    """The PDS refused a request, or could not be reached."""


@dataclass(frozen=True)
class PdsAccount:
    """Where and as whom to log in. PLC changes need the account's full password, not an app password."""

    pds_url: str
    identifier: str
    password: str

    def __repr__(self) -> str:  # never show the password
        return f"PdsAccount({self.pds_url!r}, {self.identifier!r})"


@dataclass
class PdsSession:
    client: AsyncClient
    did: str


@contextlib.asynccontextmanager
async def pds_session(account: PdsAccount, *, http_timeout: float = DEFAULT_TIMEOUT) -> AsyncIterator[PdsSession]:
    """Log in (createSession) and yield the client and the account's DID.

    The SDK's client package (~0.5 s to import) is imported here, by the commands that talk to a PDS, and not
    by every command that imports this module (labeler.cli)."""
    from atproto import AsyncClient
    from atproto_client.request import AsyncRequest

    client = AsyncClient(base_url=account.pds_url, request=AsyncRequest(timeout=http_timeout))
    try:
        async with pds_step(f"logging in to {account.pds_url} as {account.identifier}"):
            await client.login(account.identifier, account.password, fetch_bsky_profile=False)
            did = (await client.com.atproto.server.get_session()).did
        yield PdsSession(client, did)
    finally:
        await client.request.close()


@contextlib.asynccontextmanager
async def pds_step(step: str) -> AsyncIterator[None]:
    """Turn SDK and transport errors inside the block into `PdsError("<step> failed: …")`."""
    from atproto_client.exceptions import RequestErrorBase, UnauthorizedError

    try:
        yield
    except UnauthorizedError as exc:
        raise PdsError(f"{step} failed: {_detail(exc)} (check the identifier and password)") from None
    except RequestErrorBase as exc:
        detail = _detail(exc)
        if "token scope" in detail.lower():  # the session was made with an app password
            detail += " (app passwords cannot do this: use the account's full password)"
        raise PdsError(f"{step} failed: {detail}") from None
    except httpx.HTTPError as exc:
        raise PdsError(f"{step} failed: {type(exc).__name__} {exc}".strip()) from None


def _detail(exc: RequestErrorBase) -> str:
    response = exc.response
    if response is None:
        cause = exc.__cause__ or exc.__context__
        return f"PDS unreachable ({type(cause).__name__ if cause else type(exc).__name__})"
    content = response.content
    from atproto_client.models.common import XrpcError

    if isinstance(content, XrpcError):
        return f"HTTP {response.status_code} {content.error}: {content.message or ''}".rstrip(": ")
    return f"HTTP {response.status_code}"
