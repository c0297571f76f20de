"""`labeler entries …`: bank entries switched off for matching (disabled as false positives) or held for review
(flood control), on either matcher."""

from __future__ import annotations

import click

from labeler.cli._common import echo_json, echo_lines, run, running_labeler, settings_or_exit
from labeler.pipeline.actions.screen import EntryState


@click.group()
def entries() -> None:
    """Bank entries that are disabled or review-only."""


@entries.command("list")
@click.option("--json", "as_json", is_flag=True)
def entries_list(as_json: bool) -> None:
    """Entries with a state, by bank."""
    settings = settings_or_exit()

    async def body() -> list[EntryState]:
        async with running_labeler(settings) as labeler:
            return await labeler.pipeline.screen.states()

    states = run(body)
    if as_json:
        echo_json([vars(s) for s in states])
        return
    echo_lines(
        (
            f"{s.bank} {s.entry_id}: {s.mode} since {s.created_at} by {s.actor}"
            + (f" ({s.reason})" if s.reason else "")
            for s in states
        ),
        none="no entries held back (none disabled or review-only)",
    )


def _set(bank: str, entry_id: str, mode: str, reason: str | None) -> None:
    settings = settings_or_exit()

    async def body() -> None:
        async with running_labeler(settings) as labeler:
            await labeler.pipeline.screen.set_state(bank, entry_id, mode, reason=reason, actor="cli", via="cli")

    run(body)
    click.echo(f"{bank} {entry_id}: {mode}")


@entries.command("disable")
@click.argument("bank")
@click.argument("entry_id")
@click.option("--reason", help="Why (e.g. the review item that showed it is a false positive).")
def entries_disable(bank: str, entry_id: str, reason: str | None) -> None:
    """Stop BANK's ENTRY_ID from matching (HMA's "disable bank content"); the hash stays in the bank."""
    _set(bank, entry_id, "disabled", reason)


@entries.command("review-only")
@click.argument("bank")
@click.argument("entry_id")
@click.option("--reason", help="Why.")
def entries_review_only(bank: str, entry_id: str, reason: str | None) -> None:
    """Send BANK's ENTRY_ID's matches to a person instead of acting on them."""
    _set(bank, entry_id, "review-only", reason)


@entries.command("clear")
@click.argument("bank")
@click.argument("entry_id")
def entries_clear(bank: str, entry_id: str) -> None:
    """Let BANK's ENTRY_ID match and act again (its flood count starts afresh)."""
    settings = settings_or_exit()

    async def body() -> bool:
        async with running_labeler(settings) as labeler:
            return await labeler.pipeline.screen.clear(bank, entry_id, actor="cli", via="cli")

    if not run(body):
        raise click.ClickException(f"{bank} {entry_id} is neither disabled nor review-only")
    click.echo(f"{bank} {entry_id}: matching as usual")
