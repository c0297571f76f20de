"""Authors' handles for the review queue: each DID's document through the service's resolver (its cache, its
public-address rule for did:web, its size and time limits), and the handle it claims in `alsoKnownAs`.

The handle is what the account says it is called; checking it back (the handle's DNS or well-known record naming
the DID) would be a fetch to a host the account chose, so it is not done here, and the page says "claimed" and
always shows the DID too. A DID that cannot be resolved in time simply shows no handle.
"""

from __future__ import annotations

from collections.abc import Iterable

from labeler.console.network import gather_within
from labeler.identity.resolver import DidResolver, IdentityError
from labeler.protocol.syntax import check_handle


async def handles(resolver: DidResolver, dids: Iterable[str]) -> dict[str, str]:
    """DID → the handle its document claims, for the DIDs that resolve (within the page's few seconds) to one."""

    async def one(did: str) -> str | None:
        try:
            document = await resolver.resolve(did)
        except IdentityError:
            return None
        handle = document.get_handle() if document is not None else None
        try:
            return check_handle(handle) if handle else None
        except ValueError:  # not a handle at all: show the DID alone
            return None

    found = await gather_within([d for d in dids if d.startswith("did:")], one, late=None)
    return {did: handle for did, handle in found.items() if handle}
