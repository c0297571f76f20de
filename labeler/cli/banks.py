"""`labeler bank …`: hash banks. Embedded banks live in our database; with `matcher = "hma"` the same commands
manage HMA's banks through its curation API (`/c/banks`, `/c/bank/<B>/signal`)."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from labeler.cli._common import echo_json, echo_lines, run, settings_or_exit
from labeler.config import Settings
from labeler.pipeline.bank_import import FORMATS, parse_file
from labeler.pipeline.banks import BankError, BankStore, EntryInput, check_bank_name
from labeler.pipeline.match.base import MatchFailure
from labeler.pipeline.match.hma import FILLER_BANK, HmaMatcher
from labeler.pipeline.signals import PDQ, SIGNAL_TYPES
from labeler.store.engine import create_engine
from labeler.store.migrate import upgrade

T = TypeVar("T")
_BATCH = 1000


@click.group()
def bank() -> None:
    """Hash banks (embedded, or HMA's with matcher = "hma")."""


def _with_store(settings: Settings, body: Callable[[BankStore], Awaitable[T]]) -> T:
    async def go() -> T:
        engine = create_engine(settings.database_url)
        try:
            await upgrade(engine)
            return await body(BankStore(engine))
        finally:
            await engine.dispose()

    return _run(go)


def _with_hma(settings: Settings, body: Callable[[HmaMatcher], Awaitable[T]]) -> T:
    async def go() -> T:
        hma = HmaMatcher(settings.hma_url)
        try:
            return await body(hma)
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
@click.option("--note", help="What the bank holds (embedded banks only).")
@click.option("--signal", "signal_type", type=_SIGNAL, default=PDQ, show_default=True, help="The hashes it holds.")
def bank_create(name: str, note: str | None, signal_type: str) -> None:
    """Create bank NAME (UPPER_WITH_UNDERSCORE) for hashes of one signal type."""
    settings = settings_or_exit()
    try:
        check_bank_name(name)
    except BankError as exc:
        raise click.ClickException(str(exc)) from None
    if settings.matcher == "hma":
        _hma_signal(signal_type)
        _with_hma(settings, lambda hma: hma.create_bank(name))
    else:
        _with_store(settings, lambda store: store.create(name, note, signal_type=signal_type))
    click.echo(f"created {signal_type} bank {name}")


def _hma_signal(signal_type: str) -> None:
    """HMA banks hold content of any signal type HMA has enabled; of ours, the matcher speaks PDQ to it."""
    if signal_type != PDQ:
        raise click.ClickException(f"the hma matcher does not take {signal_type} hashes; use the embedded matcher")


@bank.command("list")
@click.option("--json", "as_json", is_flag=True)
def bank_list(as_json: bool) -> None:
    """List banks (with entry counts for embedded banks)."""
    settings = settings_or_exit()
    rows: list[dict[str, Any]]
    if settings.matcher == "hma":
        banks = _with_hma(settings, lambda hma: hma.list_banks())
        rows = [
            {"name": b.name, "matching_enabled_ratio": b.matching_enabled_ratio}
            for b in banks
            if b.name != FILLER_BANK  # ours, not the operator's (see `match.hma`)
        ]
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
        else f"enabled {row['matching_enabled_ratio']:g}"
    )
    return f"{row['name']}  {detail}" + (f"  {row['note']}" if row.get("note") else "")


@bank.command("remove")
@click.argument("name")
@click.option("--entry", "entry_id", type=int, help="Remove only this entry (embedded banks).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def bank_remove(name: str, entry_id: int | None, yes: bool) -> None:
    """Remove bank NAME with all its entries, or one entry of it."""
    settings = settings_or_exit()
    if entry_id is not None:
        if settings.matcher == "hma":
            raise click.ClickException("--entry is for embedded banks; manage HMA content in HMA")
        if not _with_store(settings, lambda store: store.remove_entry(name, entry_id)):
            raise click.ClickException(f"bank {name} has no entry {entry_id}")
        click.echo(f"removed entry {entry_id} from {name}")
        return
    if not yes:
        click.confirm(f"Remove bank {name} and all its entries?", abort=True)
    if settings.matcher == "hma":
        _with_hma(settings, lambda hma: hma.delete_bank(name))
        click.echo(f"removed bank {name}")
    else:
        removed = _with_store(settings, lambda store: store.drop(name))
        click.echo(f"removed bank {name} ({removed} entries)")


@bank.command("import")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Default: from the file extension.")
@click.option("--create", is_flag=True, help="Create the bank if it does not exist.")
@click.option(
    "--signal", "signal_type", type=_SIGNAL, help="The file's hash type (default: the bank's; pdq for a new bank)."
)
def bank_import(name: str, path: Path, fmt: str | None, create: bool, signal_type: str | None) -> None:
    """Import hashes from PATH (CSV/TSV/text: hash[, external_id[, note]]) into bank NAME.

    Bad rows are reported with their line numbers and skipped; the exit status is 1 if there were any.
    """
    settings = settings_or_exit()
    if settings.matcher == "hma":
        signal_type = signal_type or PDQ
        _hma_signal(signal_type)
    else:
        signal_type = _with_store(settings, lambda store: _bank_signal(store, name, signal_type, create))
    try:
        parsed = parse_file(path, fmt, signal_type)
    except (OSError, UnicodeError, ValueError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    for line_no, why in parsed.errors:
        click.echo(f"{path}:{line_no}: {why}", err=True)
    entries = [entry for _, entry in parsed.entries]
    if settings.matcher == "hma":
        added = _with_hma(settings, lambda hma: _import_hma(hma, name, entries, create))
    else:
        added = _with_store(settings, lambda store: _import_embedded(store, name, entries, create, signal_type))
    skipped = len(entries) - added
    click.echo(f"imported {added} entries into {name} ({skipped} already present, {len(parsed.errors)} bad rows)")
    if parsed.errors:
        raise SystemExit(1)


async def _bank_signal(store: BankStore, name: str, wanted: str | None, create: bool) -> str:
    """The signal type to read the file as: the bank's, which `--signal` must agree with."""
    banks = {b.name: b.signal_type for b in await store.all_banks()}
    if name not in banks:
        if not create:
            raise BankError(f"no bank named {name!r} (--create makes it)")
        return wanted or PDQ
    if wanted is not None and wanted != banks[name]:
        raise BankError(f"bank {name} holds {banks[name]} hashes, not {wanted}")
    return banks[name]


async def _import_embedded(
    store: BankStore, name: str, entries: list[EntryInput], create: bool, signal_type: str
) -> int:
    if create and name not in {b.name for b in await store.all_banks()}:
        await store.create(name, signal_type=signal_type)
    added = 0
    with click.progressbar(length=len(entries), label=f"importing into {name}", file=sys.stderr) as bar:
        for start in range(0, len(entries), _BATCH):
            batch = entries[start : start + _BATCH]
            added += await store.add_entries(name, batch)
            bar.update(len(batch))
    return added


async def _import_hma(hma: HmaMatcher, name: str, entries: list[EntryInput], create: bool) -> int:
    if create and name not in {b.name for b in await hma.list_banks()}:
        await hma.create_bank(name)
    with click.progressbar(entries, label=f"importing into HMA {name}", file=sys.stderr) as bar:
        for entry in bar:
            note = " ".join(filter(None, (entry.external_id, entry.note))) or None
            await hma.add_signal(name, entry.value, note=note[:255] if note else None)
    return len(entries)
