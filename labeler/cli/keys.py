"""`labeler keys …`: label signing keys in LABELER_KEYS_DIR. Private keys are never printed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import click

from labeler.cli._activation import activate_named_key
from labeler.cli._common import echo_json, migrated_engine, run, running_labeler, settings_or_exit
from labeler.cli._identity import (
    ask_password,
    pds_account,
    pds_options,
    publish_via_pds,
    publish_with_rotation_key,
    publishable_endpoint,
    resolver_for,
    rotation_key,
    run_identity,
)
from labeler.config import Settings
from labeler.identity.rotation import DEFAULT_CONFIRM_TIMEOUT, Publish, Rotation, rotate_label_key
from labeler.key_formats import KeyFormatError, parse_private_key
from labeler.keys import ROTATION_KEY_FILE, KeyInfo, Keyring, KeyringError, write_key_file
from labeler.labels.resign import resign_backlog
from labeler.protocol.crypto import Curve, SigningKey
from labeler.store.label_stats import count_stale
from labeler.store.signing_state import SigningHold

_MAX_KEY_TEXT = 4096


def _keyring() -> Keyring:
    try:
        return Keyring.open(settings_or_exit().keys_dir)
    except KeyringError as exc:
        raise click.ClickException(str(exc)) from None


def _describe(info: KeyInfo, active: str | None) -> dict[str, object]:
    return {
        "id": info.id,
        "curve": info.curve,
        "active": info.id == active,
        "did_key": info.did_key,
        "multikey": info.multikey,
        "created_at": info.created_at,
        "retired_at": info.retired_at,
    }


force_option = click.option(
    "--force", is_flag=True, help="With --activate: even if the DID document does not name the key (labels then fail)."
)


@click.group()
def keys() -> None:
    """Label signing keys."""


@keys.command("generate")
@click.option("--curve", type=click.Choice([c.value for c in Curve]), default="k256", show_default=True)
@click.option(
    "--activate/--no-activate",
    default=None,
    help="Make it the signing key (default: only if none is). Replacing an active key needs the DID document to "
    "name the new one: use `keys rotate`.",
)
@force_option
@click.option(
    "--purpose",
    type=click.Choice(["label", "rotation"]),
    default="label",
    show_default=True,
    help="rotation: a did:plc rotation key, a lone PEM file (never in the keyring, never a label key).",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Rotation key file [<keys_dir>/rotation.pem]."
)
def keys_generate(curve: str, activate: bool | None, force: bool, purpose: str, out: Path | None) -> None:
    """Generate a new key (file mode 0600)."""
    if purpose == "rotation":
        path = out or settings_or_exit().keys_dir / ROTATION_KEY_FILE
        key = SigningKey.generate(Curve(curve))
        try:
            write_key_file(path, key)
        except KeyringError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"generated rotation key {path} {key.did_key}; back it up: it controls the DID")
        return
    _store(SigningKey.generate(Curve(curve)), activate, force, "generated")


def _store(key: SigningKey, activate: bool | None, force: bool, verb: str) -> None:
    """Add `key` to the keyring. It becomes active on its own only as the first key; replacing an active key
    goes through `activate_named_key` (the DID document must name it, or --force)."""
    settings = settings_or_exit()
    ring = _keyring()
    first = ring.active_id is None
    try:
        info = ring.add(key, activate=first and activate is not False)
    except KeyringError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{verb} {info.id} {info.did_key}{' (active)' if first and ring.active_id == info.id else ''}")
    if activate and not first:
        activate_named_key(settings, ring, info, force=force)
        click.echo(f"activated {info.id}")


@keys.command("import")
@click.argument("source", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--curve", type=click.Choice([c.value for c in Curve]), help="The curve of a hex key [k256].")
@click.option("--activate/--no-activate", default=None, help="Make it the signing key: only if the DID names it.")
@force_option
def keys_import(source: str, curve: str | None, activate: bool | None, force: bool) -> None:
    """Import a private key made elsewhere from SOURCE (a file, or - for stdin; never an argument, which would be
    in shell history): PEM, 64 hex digits (--curve, default k256) or multibase z…. Stored 0600, never printed."""
    try:
        with click.open_file(source, "rb") as fh:
            data = fh.read(_MAX_KEY_TEXT + 1)
    except OSError as exc:
        raise click.ClickException(f"cannot read {source}: {exc.strerror}") from None
    if len(data) > _MAX_KEY_TEXT:
        raise click.ClickException(f"{source} is larger than a private key ({_MAX_KEY_TEXT} bytes)")
    try:
        key = parse_private_key(data.decode("ascii"), Curve(curve) if curve else None)
    except UnicodeDecodeError:
        raise click.ClickException(f"{source}: not a text key (PEM, hex or multibase)") from None
    except KeyFormatError as exc:
        raise click.ClickException(f"{source}: {exc}") from None
    _store(key, activate, force, "imported")


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def keys_list(as_json: bool) -> None:
    """List keys, active and retired."""
    ring = _keyring()
    rows = [_describe(k, ring.active_id) for k in ring.all_keys()]
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no keys; run `labeler keys generate`")
    for row in rows:
        state = "active" if row["active"] else ("retired" if row["retired_at"] else "inactive")
        click.echo(f"{row['id']}  {state:8}  {row['did_key']}")


@keys.command("show")
@click.argument("key_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def keys_show(key_id: str | None, as_json: bool) -> None:
    """Show a key's public forms (default: the active key): did:key and Multikey."""
    ring = _keyring()
    try:
        info = ring.info(key_id) if key_id else ring.active()[0]
    except KeyringError as exc:
        raise click.ClickException(str(exc)) from None
    row = _describe(info, ring.active_id)
    if as_json:
        echo_json(row)
        return
    for name, value in row.items():
        click.echo(f"{name:11} {value}")


def _publisher(
    settings: Settings,
    via_pds: bool,
    rotation_key_file: Path | None,
    pds: tuple[str | None, str | None, str | None, str | None],
) -> Publish | None:
    """How the new key gets into the DID document: None for our own did:web (activating publishes it)."""
    if settings.did.startswith("did:web:"):
        if not settings.serves_did_web:
            raise click.ClickException(f"{settings.did} is not served by this labeler; update its document where it is")
        return None
    if not settings.did.startswith("did:plc:"):
        raise click.ClickException(f"cannot publish a key for {settings.did}")
    publishable_endpoint(settings)
    if via_pds:
        pds_url, identifier, password, token = pds
        password = ask_password(password, full=True)

        async def through_pds(did_key: str, before_submit: Callable[[], Awaitable[None]]) -> None:
            account = await pds_account(settings, pds_url, identifier, password)
            await publish_via_pds(
                settings, account, did_key, token=token, expect_did=settings.did, before_submit=before_submit
            )

        return through_pds
    rotation = rotation_key(settings, rotation_key_file)
    return lambda did_key, before_submit: publish_with_rotation_key(
        settings, rotation, did_key, before_submit=before_submit
    )


@keys.command("rotate")
@click.option("--curve", type=click.Choice([c.value for c in Curve]), default="k256", show_default=True)
@click.option("--key", "key_id", help="Rotate to this existing inactive key (e.g. to retry) instead of a new one.")
@click.option(
    "--rotation-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="did:plc: the operator's rotation key [default: <keys_dir>/rotation.pem].",
)
@click.option("--via-pds", is_flag=True, help="did:plc: change the document through the account's PDS instead.")
@pds_options
@click.option(
    "--token", help="With --via-pds: the emailed PLC operation token (requested and prompted for if missing)."
)
@click.option("--confirm-timeout", type=float, default=DEFAULT_CONFIRM_TIMEOUT, show_default=True)
def keys_rotate(
    curve: str,
    key_id: str | None,
    rotation_key_file: Path | None,
    via_pds: bool,
    pds_url: str | None,
    identifier: str | None,
    password: str | None,
    token: str | None,
    confirm_timeout: float,
) -> None:
    """New label key → DID document → confirmed by resolving → activated; the old key is retired, not deleted."""
    settings = settings_or_exit()
    ring = _keyring()
    publish = _publisher(settings, via_pds, rotation_key_file, (pds_url, identifier, password, token))

    async def body() -> Rotation:
        # Migrated: the signing hold's table may be new.
        async with migrated_engine(settings) as engine, resolver_for(settings) as resolver:
            return await rotate_label_key(
                ring,
                settings.did,
                resolver,
                publish=publish,
                hold=SigningHold(engine),
                curve=Curve(curve),
                key_id=key_id,
                confirm_timeout=confirm_timeout,
            )

    rotation = run_identity(body)
    old = f"{rotation.old.id} (retired) → " if rotation.old else ""
    click.echo(f"rotated: {old}{rotation.new.id} {rotation.new.did_key} (active)")
    click.echo("old labels are re-signed when read; `labeler keys resign` re-signs them all now")


@keys.command("resign")
@click.option("--batch", type=click.IntRange(1, 10_000), default=500, show_default=True)
def keys_resign(batch: int) -> None:
    """Re-sign every label signed by a retired key (seq and cts unchanged), with a progress bar."""
    settings = settings_or_exit()

    async def body() -> int:
        async with running_labeler(settings) as labeler:
            total = await count_stale(labeler.engine, settings.did, labeler.keyring.active()[0].id)
            with click.progressbar(length=total, label="re-signing", show_pos=True) as bar:
                return await resign_backlog(labeler.store, labeler.resigner, batch=batch, progress=bar.update)

    click.echo(f"re-signed {run(body)} labels with the active key")
