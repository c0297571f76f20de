"""`labeler explain URI`: why a subject carries labels: history with evidence, image jobs, review items, and every
action taken on it with its outcome and reversal."""

from __future__ import annotations

from typing import Any

import click

from labeler.cli._common import echo_json, run, running_labeler, settings_or_exit
from labeler.pipeline.evidence import explain as gather
from labeler.pipeline.evidence import summary


@click.command()
@click.argument("uri")
@click.option("--json", "as_json", is_flag=True, help="Everything, as JSON.")
def explain(uri: str, as_json: bool) -> None:
    """Explain the labels on URI (an at:// URI or a DID)."""
    settings = settings_or_exit()

    async def body() -> dict[str, Any]:
        async with running_labeler(settings) as labeler:
            p = labeler.pipeline
            return await gather(labeler.store, p.jobs, p.reviews, uri, p.actioner.outbox)

    report = run(body)
    if as_json:
        echo_json(report)
        return
    click.echo(uri)
    click.echo("current labels:" if report["labels"] else "current labels: none")
    for label in report["labels"]:
        neg = " (negated)" if label.get("neg") else ""
        click.echo(f"  {label['val']}{neg}  seq={label['seq']}" + (f" cid={label['cid']}" if label.get("cid") else ""))
    if report["history"]:
        click.echo("history:")
    for event in report["history"]:
        sign = "-" if event["neg"] else "+"
        click.echo(
            f"  {event['created_at']} seq={event['seq']} {sign}{event['val']} by {event['actor']} via {event['via']}"
        )
        if event["reason"]:
            click.echo(f"      reason: {event['reason']}")
        if event["evidence"]:
            click.echo(f"      evidence: {summary(event['evidence'])}")
    if report["jobs"]:
        click.echo("image jobs:")
    for job in report["jobs"]:
        outcome = f"{job['outcome']}/{job['reason']}" if job["reason"] else str(job["outcome"] or job["status"])
        media = job["image"].get("media", "image")
        click.echo(f"  #{job['id']} {job['source']} {media} {job['image']['blob_cid']}: {outcome} ({_hashes(job)})")
        matches = (job.get("result") or {}).get("matches") or []
        if matches:
            click.echo("      matched: " + "; ".join(
                f"{m['bank']} entry {m['entry_id']} by {m.get('signal_type', 'pdq')} at distance {m['distance']}"
                for m in matches
            ))  # fmt: skip
    if report["review_items"]:
        click.echo("review items:")
    for item in report["review_items"]:
        click.echo(f"  #{item['id']} [{item['status']}] {','.join(item['labels'])}: {summary(item['evidence'])}")
    if report["actions"]:
        click.echo("actions:")
    for action in report["actions"]:
        click.echo("  " + action_line(action))


def action_line(action: dict[str, Any]) -> str:
    """`#12 takedown apply: done (applied) by pipeline [rule ncmec] record at://… — reversed by #15`."""
    params = action["params"]
    target = params.get("subject") or {}
    what = target.get("uri") or (f"blob {target['cid']}" if "cid" in target else target.get("did", ""))
    if "exchange" in params:  # feedback: the exchange and its entry
        what = f"exchange {params['exchange']} entry {params.get('remote_id')}"
    text = f"#{action['id']} {action['kind']} {action['op']}: {action['state']}"
    text += f" ({action['outcome']})" if action["outcome"] else ""
    text += f" by {action['actor']}" + (f" [rule {action['rule']}]" if action["rule"] else "")
    text += f" {what}" if what else ""
    if action["detail"] and action["state"] in ("failed", "pending", "skipped"):
        text += f": {action['detail']}"
    if action["reverses"]:
        text += f" (reverses #{action['reverses']})"
    if action["reversed_by"]:
        text += f", reversed by #{action['reversed_by']}"
    return text


def _hashes(job: dict[str, Any]) -> str:
    """The job's hashes in one line: PDQ and quality (an image) or the vPDQ frame count (a video), MD5, attempts."""
    signals = job.get("signals") or {}
    if job["image"].get("media") == "video":
        perceptual = f"vpdq {len(signals['vpdq'])} frames" if signals.get("vpdq") else "vpdq -"
    else:
        quality = job["quality"] if job["quality"] is not None else "-"
        perceptual = f"pdq {job['pdq'] or '-'}, quality {quality}"
    return f"{perceptual}, md5 {signals.get('md5') or '-'}, attempts {job['attempts']}"
