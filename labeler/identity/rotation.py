"""Label key rotation (SPEC-LABEL, protocol.md §5.4): publish the new key, confirm it, only then switch to it.

did:plc: the new key is put in the DID document first (by an operator-held rotation key or through the PDS),
the document is resolved afresh until it names the new key, and only then is the key activated. A failure at any
step leaves the new key inactive, so labels keep being signed by the key the document still names.
did:web: we serve the document ourselves from the active key, so activating *is* publishing; the served
document is then checked. Old labels are re-signed lazily on read, or all at once by
`labeler.labels.resign.resign_backlog`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from labeler.identity.resolver import DidResolver, IdentityError
from labeler.keys import KeyInfo, Keyring
from labeler.protocol.crypto import Curve

DEFAULT_CONFIRM_TIMEOUT: Final = 10.0
_CONFIRM_POLL: Final = 0.25

#: Puts the given label did:key (with our labeler service) in the DID document.
Publish = Callable[[str], Awaitable[None]]


class RotationError(IdentityError):
    """The rotation stopped; the message says which key is active now and how to retry."""


@dataclass(frozen=True)
class Rotation:
    old: KeyInfo | None
    new: KeyInfo


async def rotate_label_key(
    keyring: Keyring,
    did: str,
    resolver: DidResolver,
    *,
    publish: Publish | None,
    curve: Curve = Curve.K256,
    key_id: str | None = None,
    confirm_timeout: float = DEFAULT_CONFIRM_TIMEOUT,
) -> Rotation:
    """Rotate to a new key (or the inactive `key_id`). `publish` None means did:web: activate, then confirm."""
    old = keyring.info(keyring.active_id) if keyring.active_id else None
    new = keyring.info(key_id) if key_id else keyring.generate(curve, activate=False)
    if old is not None and new.id == old.id:
        raise RotationError(f"{new.id} is already the active key")
    if publish is None:
        keyring.activate(new.id)
        if not await wait_for_label_key(resolver, did, new.did_key, confirm_timeout):
            raise RotationError(
                f"{new.id} is active, but {did} does not show it yet: is the server running and serving "
                "/.well-known/did.json? Check with `labeler doctor`."
            )
        return Rotation(old, keyring.info(new.id))
    retry = f"The new key {new.id} was NOT activated; retry with `labeler keys rotate --key {new.id}`."
    try:
        await publish(new.did_key)
    except IdentityError as exc:
        raise RotationError(f"updating the DID document failed: {exc}. {retry}") from None
    if not await wait_for_label_key(resolver, did, new.did_key, confirm_timeout):
        raise RotationError(f"{did} still does not name {new.did_key} after {confirm_timeout:g} s. {retry}")
    return Rotation(old, keyring.activate(new.id))


async def wait_for_label_key(resolver: DidResolver, did: str, did_key: str, wait_s: float) -> bool:
    """Resolve afresh (as a verifier would after a failed check) until the label key is `did_key`, or time out."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if await resolver.label_key(did, force_refresh=True) == did_key:
                return True
        except IdentityError:
            pass  # not resolvable right now; keep trying until the deadline
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_CONFIRM_POLL)
