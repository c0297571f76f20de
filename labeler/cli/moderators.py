"""`labeler moderators …`: who may sign in to the web console (`/console/`) besides the operator."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from labeler.cli._common import echo_json, run, running_labeler, settings_or_exit

if TYPE_CHECKING:
    from labeler.console.moderators import Moderator


@click.group()
def moderators() -> None:
    """Console moderators."""


@moderators.command("add")
@click.argument("name")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="The moderator's credential (prompted for when not given; at least 12 characters). Only a scrypt hash "
    "is stored.",
)
def moderators_add(name: str, password: str) -> None:
    """Add NAME, who signs in to the console with the given credential."""
    settings = settings_or_exit()
    # The console (Starlette, Jinja2, the service) is imported by these commands, not with the CLI (labeler.cli).
    from labeler.console.moderators import ModeratorError, ModeratorStore

    async def body() -> Moderator:
        async with running_labeler(settings) as labeler:
            return await ModeratorStore(labeler.engine).add(name, password, actor="cli")

    try:
        added = run(body)
    except ModeratorError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"added moderator {added.name}")


@moderators.command("list")
@click.option("--json", "as_json", is_flag=True)
def moderators_list(as_json: bool) -> None:
    """Moderators, by name."""
    settings = settings_or_exit()
    # The console (Starlette, Jinja2, the service) is imported by these commands, not with the CLI (labeler.cli).
    from labeler.console.moderators import ModeratorStore

    async def body() -> list[Moderator]:
        async with running_labeler(settings) as labeler:
            return await ModeratorStore(labeler.engine).list()

    found = run(body)
    if as_json:
        echo_json([vars(m) for m in found])
        return
    for m in found:
        click.echo(f"{m.name} (added {m.created_at} by {m.created_by})")


@moderators.command("remove")
@click.argument("name")
def moderators_remove(name: str) -> None:
    """Remove NAME: their credential stops working and their console sessions end at their next request."""
    settings = settings_or_exit()
    # The console (Starlette, Jinja2, the service) is imported by these commands, not with the CLI (labeler.cli).
    from labeler.console.moderators import ModeratorError, ModeratorStore

    async def body() -> None:
        async with running_labeler(settings) as labeler:
            await ModeratorStore(labeler.engine).remove(name)

    try:
        run(body)
    except ModeratorError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"removed moderator {name}")
