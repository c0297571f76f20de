"""Making a label key active from the CLI (`keys generate --activate`, `keys import --activate`): only once the DID
document names it, as `keys rotate` does. Otherwise every label signed from then on (and every old label re-signed
on read) carries a signature no consumer can verify. `--force` overrides that, with a warning nobody can miss."""

from __future__ import annotations

import logging

import click

from labeler.cli._identity import resolver_for, run_identity
from labeler.config import Settings
from labeler.keys import KeyInfo, Keyring

log = logging.getLogger(__name__)


def activate_named_key(settings: Settings, ring: Keyring, info: KeyInfo, *, force: bool) -> KeyInfo:
    """Activate `info` if our DID document names it now; refuse (ClickException) otherwise, unless `force`."""
    problem = _unpublished(settings, info)
    if problem is not None:
        if not force:
            raise click.ClickException(
                f"{problem}: activating {info.id} would make every label it signs unverifiable. Publish it with "
                f"`labeler keys rotate --key {info.id}` (publishes, confirms, then activates), or pass --force."
            )
        warning = (
            f"WARNING: {problem}. Activating {info.id} anyway (--force): every label signed or re-signed from now "
            f"on FAILS verification until {settings.did}'s document names {info.did_key}."
        )
        log.warning("%s", warning)
        click.secho(warning, fg="red", bold=True, err=True)
    return ring.activate(info.id)


def _unpublished(settings: Settings, info: KeyInfo) -> str | None:
    """Why the DID document does not name `info` as the label key, or None when it does."""
    if settings.serves_did_web:
        return f"{settings.did} is served from the active key, so it cannot name {info.id} before activation"

    async def label_key() -> str | None:
        async with resolver_for(settings) as resolver:
            return await resolver.label_key(settings.did, force_refresh=True)

    try:
        named = run_identity(label_key)
    except click.ClickException as exc:
        return f"cannot resolve {settings.did} ({exc.message})"
    if named != info.did_key:
        return f"{settings.did}'s document names {named or 'no label key'}, not {info.did_key}"
    return None
