"""`labeler label …`: create, negate and list labels through the same writer the API uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from labeler.cli._common import echo_json, echo_lines, run, running_labeler, settings_or_exit
from labeler.labels.reissue import Reissued, reissue
from labeler.labels.writer import LabelRequest
from labeler.protocol import syntax
from labeler.protocol.label import InvalidLabel
from labeler.store.engine import opened_engine, sqlite_file
from labeler.store.label_stats import count_src
from labeler.store.labels import LabelStore, StoredLabel


@click.group()
def label() -> None:
    """Labels."""


def _write(request: LabelRequest, *, force: bool = False) -> StoredLabel:
    settings = settings_or_exit()

    async def body() -> StoredLabel:
        async with running_labeler(settings) as labeler:
            if request.neg and not force:
                _refuse_pointless_negation(await _current(labeler.store, settings.did, request), request)
            stored = await labeler.writer.write_one(request)
            if request.neg:  # what the pipeline's matches did for this value is reversed too
                await labeler.pipeline.decisions.label_negated(
                    request.uri, request.cid, [request.val], actor=request.actor, note=request.reason
                )
            return stored

    try:
        return run(body)
    except InvalidLabel as exc:
        raise click.ClickException(str(exc)) from None


async def _current(store: LabelStore, src: str, request: LabelRequest) -> StoredLabel | None:
    """Our current label (or negation) of `request.val` on exactly this subject and version, if any."""
    async for row in store.iter_query([request.uri], [src], page=250):
        if row.label.val == request.val and row.label.cid == request.cid:
            return row
    return None


def _refuse_pointless_negation(current: StoredLabel | None, request: LabelRequest) -> None:
    """A negation goes to every subscriber and stays in the backfill: publishing one for a label that is not
    there (a typo in the URI, the value or the CID), or a second one, is refused unless asked for with --force."""
    subject = request.uri + (f" (cid {request.cid})" if request.cid else "")
    if current is None:
        raise click.ClickException(
            f"no label {request.val!r} on {subject} to negate; check the URI, value and --cid "
            "(`labeler label list --uri URI`), or publish the negation anyway with --force"
        )
    if current.label.neg:
        raise click.ClickException(
            f"{request.val!r} on {subject} is already negated (seq={current.seq}); --force publishes another negation"
        )


def _line(row: StoredLabel) -> str:
    lab = row.label
    neg = " (negation)" if lab.neg else ""
    exp = f" exp={lab.exp}" if lab.exp else ""
    return f"seq={row.seq} {lab.uri} {lab.val}{neg}{exp}" + (f" cid={lab.cid}" if lab.cid else "")


@label.command("add")
@click.argument("uri")
@click.argument("value")
@click.option("--cid", help="Pin the label to this version of the record.")
@click.option("--hours", type=click.IntRange(min=1), help="Expire after this many hours.")
@click.option("--reason", help="Why (kept in the audit log).")
def label_add(uri: str, value: str, cid: str | None, hours: int | None, reason: str | None) -> None:
    """Label URI (an at:// URI or a DID) with VALUE."""
    exp = syntax.format_datetime(datetime.now(UTC) + timedelta(hours=hours)) if hours else None
    click.echo(_line(_write(LabelRequest(uri=uri, val=value, cid=cid, exp=exp, actor="cli", via="cli", reason=reason))))


@label.command("negate")
@click.argument("uri")
@click.argument("value")
@click.option("--cid", help="The record version the label was pinned to.")
@click.option("--reason", help="Why (kept in the audit log).")
@click.option("--force", is_flag=True, help="Publish the negation even if VALUE is not on URI, or is negated already.")
def label_negate(uri: str, value: str, cid: str | None, reason: str | None, force: bool) -> None:
    """Retract VALUE from URI (publishes a negation label; a match's takedown is lifted too)."""
    request = LabelRequest(uri=uri, val=value, cid=cid, neg=True, actor="cli", via="cli", reason=reason)
    click.echo(_line(_write(request, force=force)))


@label.command("list")
@click.option("--uri", "patterns", multiple=True, default=["*"], show_default=True, help="URI or prefix* pattern.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--cursor", type=click.IntRange(min=0), default=0)
@click.option("--json", "as_json", is_flag=True, help="Labels as served by queryLabels.")
def label_list(patterns: tuple[str, ...], limit: int, cursor: int, as_json: bool) -> None:
    """List current labels in seq order."""
    settings = settings_or_exit()

    async def body() -> list[StoredLabel]:
        # Only the label store: a listing needs neither the service, its migrations nor its keys.
        path = sqlite_file(settings.database_url)
        if path is not None and not path.exists():
            return []  # nothing was ever labelled here (and opening the file would leave an empty one)
        async with opened_engine(settings.database_url) as engine:
            return await LabelStore(engine).query(list(patterns), [], cursor, limit)

    rows = run(body)
    if as_json:
        echo_json([{"seq": r.seq, **r.label.to_json()} for r in rows])
        return
    matching = "" if list(patterns) == ["*"] else f" matching {' '.join(patterns)}"
    echo_lines(map(_line, rows), none=f"no labels{matching}" + (f" after seq {cursor}" if cursor else ""))


@label.command("reissue")
@click.option("--from", "former", required=True, help="The former DID whose labels to issue again.")
@click.option("--dry-run", is_flag=True, help="Count what would be re-issued; write nothing.")
def label_reissue(former: str, dry_run: bool) -> None:
    """Issue the labels of a former DID of this labeler again under the current DID (after a DID change).

    The former DID's labels stay served with their original signatures either way."""
    settings = settings_or_exit()
    if former == settings.did:
        raise click.ClickException(f"{former} is the current DID; --from names the former one")

    async def body() -> Reissued:
        async with running_labeler(settings) as labeler:
            total = await count_src(labeler.engine, former)
            with click.progressbar(length=total, label="re-issuing", show_pos=True) as bar:
                return await reissue(labeler.store, labeler.writer, former, dry_run=dry_run, progress=bar.update)

    counts = run(body)
    verb = "would re-issue" if dry_run else "re-issued"
    click.echo(
        f"{verb} {counts.written} labels of {former} as {settings.did}; {counts.already} already carried, "
        f"{counts.not_in_force} negations or expired left as they are"
    )
