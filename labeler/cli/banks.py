"""`labeler bank …`: hash banks. Embedded banks live in our database; with `matcher = "hma"` the same commands
manage HMA's banks through its curation API (`labeler.pipeline.hma_banks`), with the same answers."""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from labeler.cli._common import echo_json, echo_lines, migrated_engine, run, settings_or_exit
from labeler.config import Settings
from labeler.pipeline.bank_import import FORMATS, bank_signal_type, import_entries, parse_file
from labeler.pipeline.banks import BankError, BankStore, check_bank_name
from labeler.pipeline.hma_banks import DEFAULT_CONCURRENCY, HmaBanks
from labeler.pipeline.match.base import MatchFailure
from labeler.pipeline.match.hma import HmaMatcher
from labeler.pipeline.signals import PDQ, SIGNAL_TYPES

T = TypeVar("T")


@click.group()
def bank() -> None:
    """Hash banks (embedded, or HMA's with matcher = "hma")."""


def _with_store(settings: Settings, body: Callable[[BankStore], Awaitable[T]]) -> T:
    async def go() -> T:
        async with migrated_engine(settings) as engine:
            return await body(BankStore(engine))

    return _run(go)


def _with_hma(settings: Settings, body: Callable[[HmaBanks], Awaitable[T]]) -> T:
    async def go() -> T:
        async with migrated_engine(settings) as engine:
            hma = HmaMatcher(settings.hma_url)
            try:
                return await body(HmaBanks(hma, engine))
            finally:
                await hma.aclose()

    return _run(go)


def _run(go: Callable[[], Awaitable[T]]) -> T:
    try:
        return run(go)
    except (BankError, MatchFailure) as exc:
        raise click.ClickException(str(exc)) from None


_SIGNAL = click.Choice(SIGNAL_TYPES)


@bank.command("create")
@click.argument("name")
@click.option("--note", help="What the bank holds.")
@click.option("--signal", "signal_type", type=_SIGNAL, default=PDQ, show_default=True, help="The hashes it holds.")
def bank_create(name: str, note: str | None, signal_type: str) -> None:
    """Create bank NAME (UPPER_WITH_UNDERSCORE) for hashes of one signal type."""
    settings = settings_or_exit()
    try:
        check_bank_name(name)
    except BankError as exc:
        raise click.ClickException(str(exc)) from None
    if settings.matcher == "hma":
        _with_hma(settings, lambda hma: hma.create(name, note, signal_type=signal_type))
    else:
        _with_store(settings, lambda store: store.create(name, note, signal_type=signal_type))
    click.echo(f"created {signal_type} bank {name}")


@bank.command("list")
@click.option("--json", "as_json", is_flag=True)
def bank_list(as_json: bool) -> None:
    """List banks (with entry counts for embedded banks, enable ratios for HMA's)."""
    settings = settings_or_exit()
    rows: list[dict[str, Any]]
    if settings.matcher == "hma":
        rows = _with_hma(settings, lambda hma: hma.all_banks())
    else:
        rows = [b.__dict__ for b in _with_store(settings, lambda store: store.all_banks())]
    if as_json:
        echo_json(rows)
        return
    echo_lines(map(_bank_line, rows), none="no banks; `labeler bank create NAME` makes one")


def _bank_line(row: dict[str, Any]) -> str:
    detail = (
        f"{row['signal_type']}  {row['entries']} entries"
        if "entries" in row
        else f"{row['signal_type'] or '?'}  enabled {row['matching_enabled_ratio']:g}"
    )
    return f"{row['name']}  {detail}" + (f"  {row['note']}" if row.get("note") else "")


@bank.command("remove")
@click.argument("name")
@click.option("--entry", "entry_id", type=int, help="Remove only this entry (on HMA: its content id).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def bank_remove(name: str, entry_id: int | None, yes: bool) -> None:
    """Remove bank NAME with all its entries, or one entry of it."""
    settings = settings_or_exit()
    hma = settings.matcher == "hma"
    if entry_id is not None:
        if hma:
            removed = _with_hma(settings, lambda banks: banks.remove_entry(name, entry_id))
        else:
            removed = _with_store(settings, lambda store: store.remove_entry(name, entry_id))
        if not removed:
            raise click.ClickException(f"bank {name} has no entry {entry_id}")
        click.echo(f"removed entry {entry_id} from {name}")
        return
    if not yes:
        click.confirm(f"Remove bank {name} and all its entries?", abort=True)
    if hma:
        _with_hma(settings, lambda banks: banks.drop(name))
        click.echo(f"removed bank {name}")
    else:
        removed_entries = _with_store(settings, lambda store: store.drop(name, actor="cli"))
        click.echo(f"removed bank {name} ({removed_entries} entries)")


@bank.command("import")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Default: from the file extension.")
@click.option("--create", is_flag=True, help="Create the bank if it does not exist.")
@click.option(
    "--signal", "signal_type", type=_SIGNAL, help="The file's hash type (default: the bank's; pdq for a new bank)."
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=DEFAULT_CONCURRENCY,
    show_default=True,
    help="HMA: hashes sent at once (HMA adds one per request).",
)
def bank_import(
    name: str, path: Path, fmt: str | None, create: bool, signal_type: str | None, concurrency: int
) -> None:
    """Import hashes from PATH (CSV/TSV/text: hash[, external_id[, note]]) into bank NAME.

    Hashes already in the bank are skipped, so an import that was stopped can be run again to finish it. Bad rows
    are reported with their line numbers and skipped; the exit status is 1 if there were any, or if any hash
    failed to land.
    """
    settings = settings_or_exit()
    hma = settings.matcher == "hma"
    if hma:
        signal_type = _with_hma(settings, lambda banks: banks.signal_type_for(name, signal_type, create))
    else:
        signal_type = _with_store(settings, lambda store: bank_signal_type(store, name, signal_type, create))
    try:
        parsed = parse_file(path, fmt, signal_type)
    except (OSError, UnicodeError, ValueError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    for line_no, why in parsed.errors:
        click.echo(f"{path}:{line_no}: {why}", err=True)
    entries = [entry for _, entry in parsed.entries]
    kind = signal_type
    with _progress(len(entries), f"importing into {name}") as step:
        if hma:
            report = _with_hma(
                settings,
                lambda banks: banks.import_entries(
                    name, kind, entries, create=create, concurrency=concurrency, progress=step
                ),
            )
        else:
            report = _with_store(
                settings,
                lambda store: import_entries(
                    store, name, entries, create=create, signal_type=kind, step=lambda n, _: step(n), actor="cli"
                ),
            )
    lines = {entry.value: line_no for line_no, entry in reversed(parsed.entries)}
    for entry, why in report.failed:
        click.echo(f"{path}:{lines.get(entry.value, '?')}: not imported: {why}", err=True)
    recovered = f", {report.recovered} found landed by an interrupted import" if report.recovered else ""
    click.echo(
        f"imported {report.landed} entries into {name} ({report.skipped} already present{recovered}, "
        f"{len(report.failed)} failed, {len(parsed.errors)} bad rows)"
    )
    if report.stopped is not None:
        raise click.ClickException(f"stopped: {report.stopped}; run the same import again to finish it")
    if parsed.errors or report.failed:
        raise SystemExit(1)


@contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr that shows its rate; yields `step(n)` to call as n entries are done."""
    started = time.monotonic()
    done = 0
    with click.progressbar(length=total, label=label, file=sys.stderr, item_show_func=lambda rate: rate) as bar:

        def step(n: int) -> None:
            nonlocal done
            done += n
            bar.update(n, f"{done / max(time.monotonic() - started, 1e-3):,.0f} hashes/s")

        yield step
