"""Label key rotation (SPEC-LABEL, protocol.md §5.4): publish the new key, confirm it, only then switch to it.

did:plc: the new key is put in the DID document first (by an operator-held rotation key or through the PDS),
the document is resolved afresh until it names the new key, and only then is the key activated. A failure at any
step leaves the new key inactive, so labels keep being signed by the key the document still names.
did:web: we serve the document ourselves from the active key, so activating *is* publishing; the served
document is then checked. Old labels are re-signed lazily on read, or all at once by
`labeler.labels.resign.resign_backlog`.

Signing is held, for every process on the database, from just before the document changes until the new key is
active (`labeler.store.signing_state`); then every process re-signs what it has not committed yet with the new
key. So no label signed by the old key is committed once the document names the new one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol

from labeler.identity.resolver import DidResolver, IdentityError
from labeler.keys import KeyInfo, Keyring
from labeler.protocol.crypto import Curve

DEFAULT_CONFIRM_TIMEOUT: Final = 10.0
_CONFIRM_POLL: Final = 0.25
#: Seconds a hold outlasts the confirmation timeout at most (for the submission itself); a rotation that dies
#: holds signing no longer than this plus `confirm_timeout`.
HOLD_MARGIN: Final = 30.0

#: Puts the given label did:key (with our labeler service) in the DID document, awaiting the second argument
#: just before it submits the change.
Publish = Callable[[str, Callable[[], Awaitable[None]]], Awaitable[None]]


class Hold(Protocol):
    """The signing hold (`labeler.store.signing_state.SigningHold`)."""

    async def start(self, seconds: float) -> None: ...

    async def end(self, *, rotated: bool) -> None: ...


class _NoHold:
    """For a keyring with no database beside it (tests of the rotation steps alone)."""

    async def start(self, seconds: float) -> None:
        return None

    async def end(self, *, rotated: bool) -> None:
        return None


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
    hold: Hold | None = None,
    curve: Curve = Curve.K256,
    key_id: str | None = None,
    confirm_timeout: float = DEFAULT_CONFIRM_TIMEOUT,
) -> Rotation:
    """Rotate to a new key (or the inactive `key_id`). `publish` None means did:web: activate, then confirm."""
    old = keyring.info(keyring.active_id) if keyring.active_id else None
    new = keyring.info(key_id) if key_id else keyring.generate(curve, activate=False)
    if old is not None and new.id == old.id:
        raise RotationError(f"{new.id} is already the active key")
    hold = hold or _NoHold()
    seconds = confirm_timeout + HOLD_MARGIN
    if publish is None:
        await hold.start(seconds)
        try:
            keyring.activate(new.id)
        finally:
            await hold.end(rotated=keyring.active_id == new.id)
        if not await wait_for_label_key(resolver, did, new.did_key, confirm_timeout):
            raise RotationError(
                f"{new.id} is active, but {did} does not show it yet: is the server running and serving "
                "/.well-known/did.json? Check with `labeler doctor`."
            )
        return Rotation(old, keyring.info(new.id))
    held = False

    async def hold_signing() -> None:
        nonlocal held
        await hold.start(seconds)
        held = True

    try:
        active = await _publish_and_activate(keyring, did, resolver, publish, hold_signing, new, confirm_timeout)
    except BaseException:
        if held:  # signing resumes with the old key, which the document may still name
            await hold.end(rotated=False)
        raise
    await hold.end(rotated=True)
    return Rotation(old, active)


async def _publish_and_activate(
    keyring: Keyring,
    did: str,
    resolver: DidResolver,
    publish: Publish,
    hold_signing: Callable[[], Awaitable[None]],
    new: KeyInfo,
    confirm_timeout: float,
) -> KeyInfo:
    retry = f"The new key {new.id} was NOT activated; retry with `labeler keys rotate --key {new.id}`."
    try:
        await publish(new.did_key, hold_signing)
    except IdentityError as exc:
        raise RotationError(f"updating the DID document failed: {exc}. {retry}") from None
    if not await wait_for_label_key(resolver, did, new.did_key, confirm_timeout):
        raise RotationError(f"{did} still does not name {new.did_key} after {confirm_timeout:g} s. {retry}")
    return keyring.activate(new.id)


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
