"""`labeler doctor`: check the labeler the way the network sees it; exit 1 when something is wrong."""

from __future__ import annotations

from datetime import UTC, datetime

import click
import httpx
from sqlalchemy.exc import SQLAlchemyError

from labeler.cli._common import echo_json, settings_or_exit
from labeler.cli._identity import resolver_for, run_identity
from labeler.config import Settings
from labeler.exchanges.doctor import exchange_findings
from labeler.identity.doctor import DEFAULT_WS_WAIT, WINDOW, Finding, LocalFacts, diagnose, healthy
from labeler.identity.doctor.appview import PUBLIC_APPVIEW, check_appview
from labeler.keys import Keyring, KeyringError
from labeler.outbound import public_transport
from labeler.pipeline.actions.doctor import action_findings
from labeler.pipeline.lag_doctor import lag_findings
from labeler.pipeline.match.doctor import matcher_findings
from labeler.store.engine import StoreError, opened_engine, require_database
from labeler.store.label_samples import active_values, sample_sources, shown_label, stream_cursor
from labeler.store.label_stats import count_on_own_content
from labeler.store.labels import LabelStore

HTTP_TIMEOUT = 10.0
_MARKS = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


async def local_facts(settings: Settings) -> LocalFacts:
    """Our side of the comparison: DID, URL, active key, stream head, where to sample what we serve, and the values
    we have in force."""
    try:
        active: str | None = Keyring.open(settings.keys_dir).active()[0].did_key
    except KeyringError:
        active = None
    require_database(settings.database_url)
    try:
        async with opened_engine(settings.database_url) as engine:
            return LocalFacts(
                did=settings.did,
                public_url=settings.public_url,
                active_did_key=active,
                serves_did_web=settings.serves_did_web,
                head=await LabelStore(engine).head(),
                stream_from=await stream_cursor(engine, WINDOW),
                sources=await sample_sources(engine, WINDOW),
                active_values=await active_values(engine, settings.did, datetime.now(UTC)),
                own_content_labels=await count_on_own_content(engine, settings.did),
                shown_label=await shown_label(engine, settings.did, datetime.now(UTC)),
            )
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the labels database ({type(exc).__name__}); try `labeler db upgrade`") from None


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--pds", "pds_url", envvar="LABELER_PDS_URL", help="Read the declaration here [default: the DID's PDS].")
@click.option("--wait", type=float, default=DEFAULT_WS_WAIT, show_default=True, help="Seconds to listen to the stream.")
@click.option(
    "--appview", "appview_url", is_flag=False, flag_value=PUBLIC_APPVIEW, default=None, metavar="[URL]",
    help=f"Also ask this AppView [{PUBLIC_APPVIEW}] whether it shows our newest label, as the Bluesky app would.",
)  # fmt: skip
def doctor(as_json: bool, pds_url: str | None, wait: float, appview_url: str | None) -> None:
    """Resolve our DID as an AppView would and check key, endpoint, stream, declaration and label values; and that
    no child-safety match is labelled descriptively in public, and the takedown PDS accepts our admin password.
    With --appview, ask the AppView whether it applies our labels (the last step of going live)."""
    settings = settings_or_exit()

    async def body() -> list[Finding]:
        facts = await local_facts(settings)
        async with resolver_for(settings) as resolver, httpx.AsyncClient(timeout=HTTP_TIMEOUT, trust_env=False) as http:
            findings = await diagnose(facts, resolver, http, pds_url=pds_url, ws_wait=wait)
            findings += await action_findings(settings, http) + await lag_findings(settings)
            findings += await matcher_findings(settings) + await exchange_findings(settings)
        if appview_url:
            transport = public_transport(allow_private=settings.allow_private_fetch)
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, transport=transport, trust_env=False) as outbound:
                findings.append(await check_appview(outbound, appview_url, settings.did, facts.shown_label))
        return findings

    findings = run_identity(body)
    if as_json:
        echo_json({"did": settings.did, "healthy": healthy(findings), "checks": [f.to_json() for f in findings]})
    else:
        click.echo(f"labeler {settings.did} at {settings.public_url}")
        for f in findings:
            click.echo(f"[{_MARKS[f.status]}] {f.check:18} {f.message}")
            if f.fix and f.status in ("fail", "warn"):
                click.echo(f"{'':26}fix: {f.fix}")
        click.echo("healthy" if healthy(findings) else "problems found")
    if not healthy(findings):
        raise SystemExit(1)
