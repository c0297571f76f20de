"""`labeler keys …`: label signing keys in LABELER_KEYS_DIR. Private keys are never printed."""

from __future__ import annotations

import click

from labeler.cli._common import echo_json, settings_or_exit
from labeler.keys import KeyInfo, Keyring, KeyringError
from labeler.protocol.crypto import Curve


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


@click.group()
def keys() -> None:
    """Label signing keys."""


@keys.command("generate")
@click.option("--curve", type=click.Choice([c.value for c in Curve]), default="k256", show_default=True)
@click.option("--activate/--no-activate", default=None, help="Make it the signing key (default: only if none is).")
def keys_generate(curve: str, activate: bool | None) -> None:
    """Generate a new key (file mode 0600)."""
    ring = _keyring()
    info = ring.generate(Curve(curve), activate=activate)
    click.echo(f"generated {info.id} {info.did_key}{' (active)' if ring.active_id == info.id else ''}")


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
