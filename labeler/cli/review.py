"""`labeler review …`: the review queue of matches the policy sends to a person; confirm acts, reject reverses."""

from __future__ import annotations

import click

from labeler.cli._common import echo_json, echo_lines, run, running_labeler, settings_or_exit
from labeler.pipeline.actions.decisions import FALSE_POSITIVE, Verdict
from labeler.pipeline.banks import BankError
from labeler.pipeline.evidence import summary
from labeler.pipeline.match.base import MatchFailure
from labeler.pipeline.review import STATUSES, ReviewError, ReviewItem


@click.group()
def review() -> None:
    """Review queue."""


def _line(item: ReviewItem) -> str:
    subject = item.subject_uri + (f" cid={item.subject_cid}" if item.subject_cid else "")
    return f"#{item.id} [{item.status}] {','.join(item.vals)} on {subject}: {summary(item.evidence)}"


@review.command("list")
@click.option("--status", type=click.Choice([*STATUSES, "all"]), default="pending", show_default=True)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--after", type=click.IntRange(min=0), default=0, help="Cursor: items with a larger id.")
@click.option("--json", "as_json", is_flag=True)
def review_list(status: str, limit: int, after: int, as_json: bool) -> None:
    """List review items, oldest first."""
    settings = settings_or_exit()

    async def body() -> list[ReviewItem]:
        async with running_labeler(settings) as labeler:
            wanted = None if status == "all" else status
            return await labeler.pipeline.reviews.list(status=wanted, after=after, limit=limit)

    items = run(body)
    if as_json:
        echo_json([i.to_json() for i in items])
        return
    echo_lines(map(_line, items), none="no review items" if status == "all" else f"no {status} review items")


@review.command("show")
@click.argument("item_id", type=int)
def review_show(item_id: int) -> None:
    """Show one item with all its evidence (JSON)."""
    settings = settings_or_exit()

    async def body() -> ReviewItem:
        async with running_labeler(settings) as labeler:
            return await labeler.pipeline.reviews.get(item_id)

    try:
        echo_json(run(body).to_json())
    except ReviewError as exc:
        raise click.ClickException(str(exc)) from None


def _decide(item_id: int, confirm: bool, note: str | None, false_positive: str | None = None) -> Verdict:
    settings = settings_or_exit()

    async def body() -> Verdict:
        async with running_labeler(settings) as labeler:
            decisions = labeler.pipeline.decisions
            if confirm:
                return await decisions.confirm(item_id, actor="cli", note=note, via="cli")
            return await decisions.reject(item_id, actor="cli", note=note, false_positive=false_positive, via="cli")

    try:
        return run(body)
    except (ReviewError, BankError, MatchFailure) as exc:
        raise click.ClickException(str(exc)) from None


def _echo_actions(verdict: Verdict) -> None:
    for action in verdict.actions:
        outcome = f"{action.state}" + (f" ({action.outcome})" if action.outcome else "")
        click.echo(f"  action #{action.id} {action.kind} {action.op}: {outcome}")


@review.command("confirm")
@click.argument("item_id", type=int)
@click.option("--note", help="Why (kept with the label's evidence).")
def review_confirm(item_id: int, note: str | None) -> None:
    """Confirm ITEM_ID: the rule's labels are published (and its takedown and report carried out)."""
    verdict = _decide(item_id, True, note)
    item = verdict.item
    click.echo(f"confirmed #{item.id}: {item.subject_uri} ({', '.join(item.vals)})")
    _echo_actions(verdict)


@review.command("reject")
@click.argument("item_id", type=int)
@click.option("--note", help="Why (kept with the item).")
@click.option(
    "--false-positive",
    type=click.Choice(FALSE_POSITIVE),
    help="Also stop future matches: disable the bank entry, or add the image to the allow-list bank.",
)
def review_reject(item_id: int, note: str | None, false_positive: str | None) -> None:
    """Reject ITEM_ID: no label, and whatever the match already did is reversed."""
    verdict = _decide(item_id, False, note, false_positive)
    click.echo(f"rejected #{verdict.item.id}" + (f" ({false_positive})" if false_positive else ""))
    _echo_actions(verdict)
