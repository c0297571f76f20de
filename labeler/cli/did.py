"""`labeler did …`: show the DID document; create or update a did:plc with our key and endpoint.

Two ways to hold a did:plc (protocol.md §5.3): with an operator-held rotation key (`create`, `update`; the key
file is made by `labeler keys generate --purpose rotation`), or through the account's PDS (`link-pds`, which
needs the account's full password and the token the PDS emails). Each command confirms by resolving the DID
afresh, and records a new DID in the config file.
"""

from __future__ import annotations

from pathlib import Path

import click

from labeler.cli._common import echo_json, settings_or_exit
from labeler.cli._config_file import config_path, save_did
from labeler.cli._identity import (
    active_key,
    ask_password,
    confirm_label_key,
    pds_account,
    pds_options,
    publish_via_pds,
    publish_with_rotation_key,
    publishable_endpoint,
    resolver_for,
    rotation_key,
    run_identity,
)
from labeler.identity.plc import PlcState
from labeler.identity.plc_directory import PlcDirectory, create_did


@click.group()
def did() -> None:
    """The labeler's DID and its document."""


@did.command("show")
def did_show() -> None:
    """Print the DID document: ours as served (did:web of our host), else as resolved now."""
    settings = settings_or_exit()
    if settings.serves_did_web:
        from labeler.xrpc.well_known import did_document  # imported when used: see labeler.cli

        echo_json(did_document(settings, active_key(settings).multikey))
        return

    async def body() -> dict[str, object]:
        async with resolver_for(settings) as resolver:
            document = await resolver.ensure_resolve(settings.did, force_refresh=True)
        return document.model_dump(by_alias=True, exclude_none=True)

    echo_json(run_identity(body))


def _record(did_value: str, save: bool) -> None:
    path = config_path()
    if save and save_did(path, did_value):
        click.echo(f"recorded did = {did_value} in {path}")
    else:
        click.echo(f"set did = {did_value!r} in your config (or LABELER_DID)")


rotation_key_option = click.option(
    "--rotation-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PEM rotation key [default: <keys_dir>/rotation.pem].",
)
save_option = click.option("--save/--no-save", default=True, help="Record the DID in the config file.")


@did.command("create")
@click.option("--handle", help="Optional handle for alsoKnownAs (at://<handle>).")
@rotation_key_option
@save_option
@click.option("--force", is_flag=True, help="Create a new DID even though the config already names a did:plc.")
def did_create(handle: str | None, rotation_key_file: Path | None, save: bool, force: bool) -> None:
    """Create a did:plc naming our label key and endpoint, controlled by the rotation key."""
    settings = settings_or_exit()
    if settings.did.startswith("did:plc:") and not force:
        raise click.ClickException(f"the config already names {settings.did}; use `labeler did update` (or --force)")
    label, rotation = active_key(settings), rotation_key(settings, rotation_key_file)
    state = PlcState(
        rotation_keys=(rotation.did_key,), also_known_as=(f"at://{handle}",) if handle else ()
    ).with_labeler(label.did_key, publishable_endpoint(settings))

    async def body() -> str:
        async with PlcDirectory(settings.plc_url) as directory:
            new_did = await create_did(directory, state, rotation)
        await confirm_label_key(settings, new_did, label.did_key)
        return new_did

    new_did = run_identity(body)
    click.echo(f"created {new_did} (label key {label.id}, endpoint {settings.public_url})")
    _record(new_did, save)


@did.command("update")
@click.option("--handle", help="Replace alsoKnownAs with at://<handle>.")
@rotation_key_option
def did_update(handle: str | None, rotation_key_file: Path | None) -> None:
    """Publish the active label key and public URL in our did:plc (signed by the rotation key)."""
    settings = settings_or_exit()
    if not settings.did.startswith("did:plc:"):
        raise click.ClickException(f"{settings.did} is not a did:plc")
    publishable_endpoint(settings)
    label, rotation = active_key(settings), rotation_key(settings, rotation_key_file)

    async def body() -> None:
        await publish_with_rotation_key(settings, rotation, label.did_key, handle=handle)
        await confirm_label_key(settings, settings.did, label.did_key)

    run_identity(body)
    click.echo(f"updated {settings.did}: label key {label.id}, endpoint {settings.public_url}")


@did.command("link-pds")
@pds_options
@click.option("--token", help="The PLC operation token from the email (requested and prompted for when missing).")
@save_option
def did_link_pds(
    pds_url: str | None, identifier: str | None, password: str | None, token: str | None, save: bool
) -> None:
    """Add our label key and endpoint to an existing account's did:plc through its PDS, keeping everything else."""
    settings = settings_or_exit()
    publishable_endpoint(settings)
    label = active_key(settings)
    password = ask_password(password, full=True)
    if not identifier and not settings.did.startswith("did:plc:"):
        raise click.ClickException("pass --identifier (the account's handle or DID)")

    async def body() -> str:
        account = await pds_account(settings, pds_url, identifier, password)
        linked = await publish_via_pds(settings, account, label.did_key, token=token, expect_did=None)
        await confirm_label_key(settings, linked, label.did_key)
        return linked

    linked = run_identity(body)
    click.echo(f"{linked} now names label key {label.id} and endpoint {settings.public_url}")
    _record(linked, save)
