"""`labeler actions …`: the action outbox: what was done, what waits, what failed, and another round for failures."""

from __future__ import annotations

import click

from labeler.cli._common import echo_json, echo_lines, run, running_labeler, settings_or_exit
from labeler.cli.explain import action_line
from labeler.pipeline.actions.altitude.handoff import AltitudeKind
from labeler.pipeline.actions.exchange_feedback import NAME as EXCHANGE_FEEDBACK
from labeler.pipeline.actions.model import Action
from labeler.pipeline.policy import KINDS

# The policy's kinds, feedback to exchanges (a person's verdicts) and hand-offs to Altitude (the review kind's twin).
LISTED_KINDS = (*KINDS, EXCHANGE_FEEDBACK, AltitudeKind.name)

STATES = ("pending", "running", "done", "skipped", "failed", "cancelled")


@click.group()
def actions() -> None:
    """Actions taken after matches (labels, reviews, takedowns, reports, webhooks) and their reversals."""


@actions.command("list")
@click.option("--state", type=click.Choice(STATES), help="Only actions in this state.")
@click.option("--kind", type=click.Choice(LISTED_KINDS), help="Only actions of this kind.")
@click.option("--subject", help="Only actions on this at:// URI or DID.")
@click.option("--after", type=click.IntRange(min=0), default=0, help="Cursor: actions with a larger id.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def actions_list(
    state: str | None, kind: str | None, subject: str | None, after: int, limit: int, as_json: bool
) -> None:
    """List actions, oldest first."""
    settings = settings_or_exit()

    async def body() -> list[Action]:
        async with running_labeler(settings) as labeler:
            outbox = labeler.pipeline.actioner.outbox
            return await outbox.list(state=state, kind=kind, subject_uri=subject, after=after, limit=limit)

    rows = run(body)
    if as_json:
        echo_json([a.to_json() for a in rows])
        return
    filtered = state or kind or subject or after
    echo_lines(
        (f"{action.subject_uri} {action_line(action.to_json())}" for action in rows),
        none="no actions match" if filtered else "no actions",
    )


@actions.command("show")
@click.argument("action_id", type=int)
def actions_show(action_id: int) -> None:
    """One action with its evidence (JSON)."""
    settings = settings_or_exit()

    async def body() -> Action | None:
        async with running_labeler(settings) as labeler:
            return await labeler.pipeline.actioner.outbox.get(action_id)

    action = run(body)
    if action is None:
        raise click.ClickException(f"no action {action_id}")
    echo_json({**action.to_json(), "evidence": action.evidence})


@actions.command("retry")
@click.argument("action_ids", type=int, nargs=-1)
@click.option("--failed", "all_failed", is_flag=True, help="Every failed action (of --kind).")
@click.option("--kind", type=click.Choice(LISTED_KINDS), help="With --failed: only this kind.")
def actions_retry(action_ids: tuple[int, ...], all_failed: bool, kind: str | None) -> None:
    """Give failed actions another round of attempts, once what refused them is fixed (a password, a URL)."""
    if not action_ids and not all_failed:
        raise click.UsageError("name action ids, or --failed")
    settings = settings_or_exit()

    async def body() -> list[Action]:
        async with running_labeler(settings) as labeler:
            actioner = labeler.pipeline.actioner
            ids = list(action_ids)
            if all_failed:
                ids += [a.id for a in await actioner.outbox.list(state="failed", kind=kind, limit=1_000_000)]
            return await actioner.attempt_now(await actioner.outbox.requeue(ids))

    for action in run(body):
        click.echo(action_line(action.to_json()))
