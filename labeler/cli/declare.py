"""`labeler declare`: publish app.bsky.labeler.service/self, built and validated from the config."""

from __future__ import annotations

import click

from labeler.cli._common import echo_json, settings_or_exit
from labeler.cli._identity import ask_password, pds_account, pds_options, pds_url_for, run_identity
from labeler.config import ConfigError
from labeler.identity.declare import DeclarationError, build_record, publish


@click.command()
@pds_options
@click.option("--dry-run", is_flag=True, help="Validate and print the record; publish nothing.")
def declare(pds_url: str | None, identifier: str | None, password: str | None, dry_run: bool) -> None:
    """Validate the declaration ([declaration] in the config) and put it in the labeler account's repo."""
    settings = settings_or_exit()
    try:
        record = build_record(settings)
    except (ConfigError, DeclarationError) as exc:
        raise click.ClickException(str(exc)) from None
    if dry_run:
        echo_json(record)
        return
    pds = run_identity(lambda: pds_url_for(settings, pds_url))
    password = ask_password(password, full=False)

    async def body() -> tuple[str, str]:
        account = await pds_account(settings, pds, identifier, password)
        return await publish(account, record, expect_did=settings.did)

    uri, cid = run_identity(body)
    values = ", ".join(record["policies"]["labelValues"])
    click.echo(f"published {uri} ({cid}): {values}")
