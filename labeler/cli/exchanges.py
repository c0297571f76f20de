"""`labeler exchange …`: hash exchanges that fill a bank (`labeler.exchanges`). Credentials go to a 0600 file in
the keys directory; no command prints them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from labeler.cli._common import echo_json, echo_lines, migrated_engine, run, settings_or_exit
from labeler.config import Settings
from labeler.exchanges.credentials import Credentials, read_credentials, remove_credentials, staged_credentials
from labeler.exchanges.errors import ExchangeError
from labeler.exchanges.fetch import FetchReport, http_client
from labeler.exchanges.schedule import fetch_leased, process_owner
from labeler.exchanges.store import FEEDBACK, FEEDBACK_REASON, Exchange, ExchangeStore, check_exchange_name
from labeler.exchanges.types import TYPE_NAMES, ExchangeType, exchange_type
from labeler.pipeline.banks import BankStore
from labeler.pipeline.options import load_options

T = TypeVar("T")
_NOT_SOURCE = ("url", FEEDBACK, FEEDBACK_REASON)  # options `exchange list` shows elsewhere, or not at all


@click.group("exchange")
def exchange() -> None:
    """Hash exchanges that fill a bank by themselves."""


def _with_store(settings: Settings, body: Callable[[ExchangeStore], Awaitable[T]]) -> T:
    async def go() -> T:
        async with migrated_engine(settings) as engine:
            return await body(ExchangeStore(engine, BankStore(engine)))

    try:
        return run(go)
    except ExchangeError as exc:
        raise click.ClickException(str(exc)) from None


@exchange.command("add")
@click.argument("name")
@click.option("--type", "type_", type=click.Choice(TYPE_NAMES), required=True, help="The exchange.")
@click.option("--bank", required=True, help="The bank it fills (created beforehand with `labeler bank create`).")
@click.option("--url", help="The exchange's base URL instead of its usual one (a proxy, a test server).")
@click.option(
    "--environment",
    help="NCMEC: which database, as python-threatexchange names them (Industry, NGO, test_Industry, …).",
)
@click.option(
    "--privacy-group",
    help="ThreatExchange: the numeric ID of the privacy group to fetch (GIFCT's hash-sharing database is one).",
)
@click.option("--user", help="NCMEC, Tech Against Terrorism: the user name the exchange gave you.")
@click.option("--password", help="NCMEC, Tech Against Terrorism: prompted for when not given (never echoed).")
@click.option(
    "--token", help="ThreatExchange: the app token, `appid|secret`; prompted for when not given (never echoed)."
)
@click.option("--subscription-key", help="StopNCII: the API Management subscription key (prompted for, never echoed).")
@click.option("--fetch-key", help="StopNCII: the FetchHashes function key (prompted for, never echoed).")
@click.option(
    "--feedback-key",
    help="StopNCII: the SubmitFeedback function key, to send verdicts back (prompted for with --feedback).",
)
@click.option(
    "--feedback", is_flag=True, help="Send moderators' confirmations and rejections of its matches back to it."
)
def exchange_add(name: str, type_: str, bank: str, feedback: bool, **given: str | None) -> None:
    """Add exchange NAME feeding BANK; its credentials go to a 0600 file in the keys directory. Secret values
    not given as options are prompted for, without echo."""
    settings = settings_or_exit()
    try:
        check_exchange_name(name)
        kind = exchange_type(type_)
        _refuse_unused(kind, given)
        options = kind.options(given)
        if feedback:
            options[FEEDBACK] = _takes_feedback(kind)
    except ExchangeError as exc:
        raise click.ClickException(str(exc)) from None
    url = options.get("url")
    if url is not None and not str(url).startswith(("https://", "http://")):
        raise click.ClickException("--url must be an http(s) URL")

    async def body(store: ExchangeStore) -> Exchange:
        await store.check_new(name, type_, bank, carries=kind.signal_types)  # before anyone types a secret
        credentials = Credentials(_credential_values(kind, given, feedback=feedback))
        with staged_credentials(settings.keys_dir, name, credentials) as place:  # all or nothing, see there
            return await store.add(name, type_, bank, options, carries=kind.signal_types, within=place)

    added = _with_store(settings, body)
    where = f", {added.options['url']}" if "url" in added.options else ""
    click.echo(f"exchange {added.name} ({added.type}{where}) fills bank {added.bank}{_feedback_note(added)}")


@exchange.command("feedback")
@click.argument("name")
@click.argument("switch", type=click.Choice(("on", "off")))
@click.option("--reason", help="NCMEC: the downvote reason to give (its name), where NCMEC offers several.")
def exchange_feedback(name: str, switch: str, reason: str | None) -> None:
    """Switch sending moderators' confirmations and rejections of matches against NAME's entries back to it on or
    off (off unless switched on)."""

    settings = settings_or_exit()

    async def body(store: ExchangeStore) -> Exchange:
        exchange = await store.get(name)
        options = {**exchange.options, FEEDBACK: switch == "on"}
        if switch == "on":
            kind = exchange_type(exchange.type)
            _takes_feedback(kind)
            credentials = read_credentials(settings.keys_dir, name)
            missing = [f.option for f in kind.credentials if f.for_feedback and not credentials.get(f.key)]
            if missing:
                raise ExchangeError(
                    f"exchange {name} has no {', '.join(missing)}: add it again with it to send feedback"
                )
        if reason is not None:
            options[FEEDBACK_REASON] = reason
        return await store.set_options(name, options)

    changed = _with_store(settings, body)
    click.echo(f"exchange {changed.name}{_feedback_note(changed) or ': no feedback is sent'}")


def _feedback_state(exchange: Exchange) -> str:
    if not exchange_type(exchange.type).has_feedback:
        return "no feedback call"
    return f"feedback {'on' if exchange.feedback else 'off'}"


def _takes_feedback(kind: ExchangeType) -> bool:
    if not kind.has_feedback:
        raise ExchangeError(f"{kind.name} exchanges take no feedback")
    return True


def _feedback_note(exchange: Exchange) -> str:
    if not exchange.feedback:
        return ""
    reason = exchange.options.get(FEEDBACK_REASON)
    return "; moderators' verdicts are sent back to it" + (f" (downvote reason {reason!r})" if reason else "")


def _refuse_unused(kind: ExchangeType, given: dict[str, str | None]) -> None:
    """An option the type does not take (another type's credential or setting) is refused, not silently dropped."""
    taken = set(kind.option_keys) | {f.key for f in kind.credentials}
    refused = [f"--{key.replace('_', '-')}" for key, value in given.items() if value is not None and key not in taken]
    if refused:
        raise ExchangeError(f"{kind.name} takes no {', '.join(refused)}")


def _credential_values(kind: ExchangeType, given: dict[str, str | None], *, feedback: bool) -> dict[str, str]:
    """The type's credential values from the options given, secrets prompted for when missing (those feedback
    needs too when `feedback` is on)."""
    values: dict[str, str] = {}
    for f in kind.credentials:
        value = given.get(f.key)
        required = f.required or (feedback and f.for_feedback)
        if value is None and f.secret and required:
            value = click.prompt(f.key.replace("_", " "), hide_input=True)
        if value is None and required:
            raise click.ClickException(f"{kind.name} needs {f.option}" + ("" if f.required else " to send feedback"))
        if value is not None:
            values[f.key] = value
    return values


@exchange.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def exchange_list(as_json: bool) -> None:
    """Exchanges with their bank, entries, last successful fetch and errors."""
    found = _with_store(settings_or_exit(), lambda store: store.all())
    if as_json:
        echo_json([_shown(e) for e in found])
        return
    echo_lines(
        (
            f"{e.name}\t{e.type}\t{e.bank}\t{_source(e)}\t{e.entries} entries"
            f"\tlast fetched {e.last_success_at or 'never'}"
            f"\t{_feedback_state(e)}"
            f"\t{e.fetch_errors} errors{f' (last: {e.last_error})' if e.last_error else ''}"
            for e in found
        ),
        none="no exchanges",
    )


@exchange.command("fetch")
@click.argument("names", nargs=-1)
def exchange_fetch(names: tuple[str, ...]) -> None:
    """Fetch NAMES (every exchange when none is named) now, from where the last fetch stopped, up to
    `exchange_fetch_pages` pages each (the schedule goes on from there, or fetch again)."""
    settings = settings_or_exit()

    async def body(store: ExchangeStore) -> list[FetchReport]:
        options = load_options(settings)
        interval = options.exchange_fetch_seconds or None
        wanted = list(names) or [e.name for e in await store.all()]
        reports = []
        async with http_client(allow_private=settings.allow_private_fetch) as http:
            for name in wanted:
                await store.get(name)  # an unknown name is an error, not "busy"
                report = await fetch_leased(
                    store, owner=process_owner(), keys_dir=settings.keys_dir, http=http, name=name, interval=interval,
                    max_pages=options.exchange_fetch_pages,
                )  # fmt: skip
                busy = "being fetched by another process; try again when it is done"
                reports.append(report or FetchReport(name, error=busy))
        return reports

    reports = _with_store(settings, body)
    for report in reports:
        click.echo(
            f"{report.name}: {report.pages} pages, {report.added} added, {report.removed} removed, "
            f"{len(report.skipped)} skipped" + (f"; stopped: {report.error}" if report.error else "")
            + ("; more to fetch after exchange_fetch_pages pages: the next fetch goes on" if report.more else "")
        )  # fmt: skip
    if any(r.error for r in reports):
        raise SystemExit(1)


@exchange.command("remove")
@click.argument("name")
def exchange_remove(name: str) -> None:
    """Forget exchange NAME and delete its credentials; its bank keeps the entries (`labeler bank remove` clears)."""
    settings = settings_or_exit()
    had = _with_store(settings, lambda store: store.remove(name))
    remove_credentials(settings.keys_dir, name)
    click.echo(f"removed exchange {name} (its bank keeps the {had} entries it fetched)")


def _source(e: Exchange) -> str:
    """What the exchange reads, whatever its type: its URL, then the options that pick a part of it
    (ThreatExchange's privacy group); the feedback switch has its own column."""
    picked = [f"{k.replace('_', ' ')} {v}" for k, v in sorted(e.options.items()) if k not in _NOT_SOURCE]
    return ", ".join([str(e.options.get("url")), *picked])


def _shown(e: Exchange) -> dict[str, Any]:
    return {
        "name": e.name, "type": e.type, "bank": e.bank, "url": e.options.get("url"), "entries": e.entries,
        "last_success_at": e.last_success_at, "fetch_errors": e.fetch_errors, "last_error": e.last_error,
        "feedback": e.feedback, "options": e.options,
    }  # fmt: skip
