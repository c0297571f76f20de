"""`labeler reports …`: the report queue from a shell (list, show, resolve), audited as actor "cli"."""

from __future__ import annotations

from typing import Any, cast

import click

from labeler.cli._common import echo_json, echo_lines, run, running_labeler, settings_or_exit
from labeler.protocol import syntax
from labeler.protocol.errors import InvalidRequest
from labeler.reports.models import (
    EVENT_ACKNOWLEDGE,
    REPORT_STATUSES,
    ModEvent,
    Report,
    ReportStatus,
    SubjectStatus,
)
from labeler.reports.subject import parse_subject_param


@click.group()
def reports() -> None:
    """Reports received through createReport, and the moderation queue."""


def _line(report: Report) -> str:
    cid = f" cid={report.subject.cid}" if report.subject.cid else ""
    resolved = f" by {report.resolved_by} at {report.resolved_at}" if report.resolved_by else ""
    return (
        f"#{report.id} [{report.status}{resolved}] {report.created_at} {report.subject.uri}{cid}"
        f" {report.reason_type.rsplit('#', 1)[-1]} from {report.reported_by}"
        + (f": {report.reason}" if report.reason else "")
    )


@reports.command("list")
@click.option(
    "--status",
    type=click.Choice([*REPORT_STATUSES, "all"]),
    default="open",
    show_default=True,
    help="Which reports.",
)
@click.option("--subject", help="Only reports on this DID or at:// URI.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--cursor", type=click.IntRange(min=0), help="Continue after this report id.")
@click.option("--newest-first", is_flag=True, help="Default is arrival order (oldest first).")
@click.option("--json", "as_json", is_flag=True)
def reports_list(
    status: str, subject: str | None, limit: int, cursor: int | None, newest_first: bool, as_json: bool
) -> None:
    """List reports, oldest first (the queue in arrival order)."""
    settings = settings_or_exit()
    subject_uri = _subject(subject)

    async def body() -> list[Report]:
        async with running_labeler(settings) as labeler:
            return await labeler.reports.store.list_reports(
                status=None if status == "all" else cast(ReportStatus, status),
                subject_uri=subject_uri,
                limit=limit,
                cursor=cursor,
                descending=newest_first,
            )

    rows = run(body)
    if as_json:
        echo_json([r.to_json() for r in rows])
        return
    echo_lines(map(_line, rows), none="no reports" if status == "all" else f"no {status} reports")


@reports.command("show")
@click.argument("report_id", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True)
def reports_show(report_id: int, as_json: bool) -> None:
    """One report, its subject's queue status, and the subject's moderation history (oldest first)."""
    settings = settings_or_exit()

    async def body() -> tuple[Report, list[SubjectStatus], list[ModEvent]]:
        async with running_labeler(settings) as labeler:
            store = labeler.reports.store
            report = await store.get(report_id)
            if report is None:
                raise click.ClickException(f"no report #{report_id}")
            statuses = await store.statuses(subject_uri=report.subject.uri, limit=1)
            events = await store.events(subject_uri=report.subject.uri, limit=1000, descending=False)
            return report, statuses, events

    report, statuses, events = run(body)
    if as_json:
        echo_json(
            {
                "report": report.to_json(),
                "subjectStatus": statuses[0].to_view() if statuses else None,
                "events": [{**e.to_view(), "actor": e.actor} for e in events],
            }
        )
        return
    click.echo(_line(report))
    if statuses:
        click.echo(f"subject: {statuses[0].open_count} open of {statuses[0].report_count} reports")
    for event in events:
        kind = str(event.event.get("$type", "")).rsplit("#", 1)[-1]
        comment = event.event.get("comment")
        click.echo(
            f"  event {event.id} {event.created_at} {kind} by {event.actor}" + (f": {comment}" if comment else "")
        )


@reports.command("resolve")
@click.argument("report_id", type=click.IntRange(min=1))
@click.option(
    "--as",
    "resolution",
    type=click.Choice(["dismissed", "actioned"]),
    default="dismissed",
    show_default=True,
    help="dismissed: looked at, nothing to do; actioned: handled (e.g. labelled with `labeler label add`).",
)
@click.option("--subject-wide", is_flag=True, help="Resolve every open non-appeal report on the same subject.")
@click.option("--note", help="Why (kept in the audit log and on the subject's status).")
@click.option("--by", "created_by", help="The moderator's DID to record (default: the labeler's own DID).")
@click.option("--json", "as_json", is_flag=True)
def reports_resolve(
    report_id: int, resolution: str, subject_wide: bool, note: str | None, created_by: str | None, as_json: bool
) -> None:
    """Close REPORT_ID (or, with --subject-wide, all open reports on its subject) as dismissed or actioned."""
    settings = settings_or_exit()
    if created_by is not None and not syntax.is_did(created_by):
        raise click.BadParameter("must be a DID", param_hint="--by")

    async def body() -> dict[str, Any]:
        async with running_labeler(settings) as labeler:
            report = await labeler.reports.store.get(report_id)
            if report is None:
                raise click.ClickException(f"no report #{report_id}")
            if report.status != "open" and not subject_wide:
                raise click.ClickException(f"report #{report_id} is already {report.status}")
            event: dict[str, Any] = {"$type": EVENT_ACKNOWLEDGE, "resolution": resolution}
            if note:
                event["comment"] = note
            result = await labeler.reports.act(
                report.subject,
                event,
                created_by=created_by or settings.did,
                actor="cli",
                report_ids=None if subject_wide else [report_id],
            )
            return {"event": result.event.to_view(), "resolved": result.resolved}

    try:
        outcome = run(body)
    except InvalidRequest as exc:
        raise click.ClickException(exc.message) from None
    if as_json:
        echo_json(outcome)
        return
    if not outcome["resolved"]:
        click.echo(f"no open reports to resolve (event {outcome['event']['id']} logged)")
        return
    ids = ", ".join(f"#{i}" for i in outcome["resolved"])
    click.echo(f"{resolution}: {ids} (event {outcome['event']['id']})")


def _subject(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return parse_subject_param(value)
    except InvalidRequest as exc:
        raise click.BadParameter(exc.message, param_hint="--subject") from None
