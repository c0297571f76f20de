"""Embedded hash banks in our database: banks, their entries, and the change log every process replays.

Bank names follow HMA's rule (`[A-Z_][A-Z0-9_]*`) so a bank can move between the two backends unchanged. A bank
holds hashes of one signal type (`signals`): PDQ entries live in `bank_entries` (the table the PDQ index loads),
the others in `bank_signals`. An entry's id is its row id; `(bank, hash)` is unique, so importing the same file
twice adds nothing. Each change (entries added, an entry removed, a bank dropped) appends one `bank_changes` row in
the same transaction (an entry given another source appends its removal and its addition); on PostgreSQL the
change log is locked for the transaction so ids commit in order and a reader that has seen id N has seen
everything below it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from labeler.pipeline.signals import PDQ, VPDQ, check_signal_type
from labeler.pipeline.signals.vpdq import parse_signal, signal_key
from labeler.protocol import syntax
from labeler.store.engine import StoreError, is_sqlite, write_transaction
from labeler.store.pipeline_schema import bank_changes, bank_entries, bank_signals, hash_banks

BANK_NAME: Final = re.compile(r"[A-Z_][A-Z0-9_]*")
_MAX_NOTE: Final = 255  # HMA's note limit, so entries survive a move to HMA
_INSERT_CHUNK: Final = 500
IndexRow = tuple[str, str, str, str | None, str | None]  # hash, bank, entry id, external id, note (PdqIndex order)


class BankError(Exception):
    """A bank operation cannot be done as asked; the message says why."""


@dataclass(frozen=True)
class Bank:
    name: str
    entries: int
    created_at: str
    note: str | None = None
    signal_type: str = PDQ
    last_change: str | None = None  # when entries were last added or removed (None: none since it was made)


@dataclass(frozen=True)
class EntryInput:
    """One hash to bank, already validated for the bank's signal type."""

    value: str
    external_id: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class BankChange:
    id: int
    bank: str
    op: str  # add | remove | drop
    first_id: int | None
    last_id: int | None
    signal_type: str = PDQ  # an add's ids are rows of this signal type's table
    created_at: str = ""
    actor: str | None = None  # who, for a person's change (an import, a drop); None for the pipeline's own


def check_bank_name(name: str) -> str:
    if BANK_NAME.fullmatch(name) is None or len(name) > 100:
        raise BankError(f"bank names are UPPER_WITH_UNDERSCORE (like HMA): {name!r}")
    return name


_LOCK_CHANGES = "LOCK TABLE bank_changes IN SHARE ROW EXCLUSIVE MODE"


class BankStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sqlite = is_sqlite(engine)

    def _change(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return write_transaction(
            self.engine, "bank change", pg_lock="LOCK TABLE bank_changes IN SHARE ROW EXCLUSIVE MODE"
        )

    async def _bank(self, conn: AsyncConnection, name: str) -> tuple[int, str]:
        """(id, signal type) of bank `name`; BankError if there is none."""
        query = sa.select(hash_banks.c.id, hash_banks.c.signal_type).where(hash_banks.c.name == name)
        found = (await conn.execute(query)).first()
        if found is None:
            raise BankError(f"no bank named {name!r}")
        return int(found.id), str(found.signal_type)

    async def _log(
        self,
        conn: AsyncConnection,
        bank: str,
        op: str,
        first: int | None,
        last: int | None,
        signal_type: str = PDQ,
        actor: str | None = None,
    ) -> None:
        values = {
            "bank": bank,
            "op": op,
            "first_id": first,
            "last_id": last,
            "created_at": syntax.now(),
            "actor": actor,
        }
        await conn.execute(bank_changes.insert().values(**values, signal_type=signal_type))

    async def create(self, name: str, note: str | None = None, *, signal_type: str = PDQ) -> Bank:
        check_bank_name(name)
        try:
            check_signal_type(signal_type)
        except ValueError as exc:
            raise BankError(str(exc)) from None
        stamp = syntax.now()
        try:
            async with self._change() as conn:
                values = {"name": name, "note": note, "created_at": stamp, "signal_type": signal_type}
                await conn.execute(hash_banks.insert().values(**values))
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise BankError(f"bank {name!r} already exists") from None
            raise
        return Bank(name, 0, stamp, note, signal_type)

    async def all_banks(self) -> list[Bank]:
        """Every bank with its entry count and last change (one grouped read of the change log, a row a batch)."""
        counts: dict[int, int] = {}
        async with self.engine.connect() as conn:
            for table in (bank_entries, bank_signals):
                per_bank = sa.select(table.c.bank_id, sa.func.count()).group_by(table.c.bank_id)
                counts.update({int(bank_id): int(n) for bank_id, n in await conn.execute(per_bank)})
            latest = sa.select(bank_changes.c.bank, sa.func.max(bank_changes.c.created_at)).group_by(
                bank_changes.c.bank
            )
            changed = {str(name): str(at) for name, at in await conn.execute(latest)}
            rows = await conn.execute(sa.select(hash_banks).order_by(hash_banks.c.name))
            return [
                Bank(r.name, counts.get(r.id, 0), r.created_at, r.note, r.signal_type, _since(changed, r)) for r in rows
            ]

    async def drop(self, name: str, *, actor: str) -> int:
        """Delete a bank and its entries; returns how many entries went with it. The change log keeps `actor`."""
        async with self._change() as conn:
            bank_id, signal_type = await self._bank(conn, name)
            table = _entry_table(signal_type)
            removed = (await conn.execute(table.delete().where(table.c.bank_id == bank_id))).rowcount
            await conn.execute(hash_banks.delete().where(hash_banks.c.id == bank_id))
            await self._log(conn, name, "drop", None, None, signal_type, actor)
        return int(removed)

    async def remove_entry(self, name: str, entry_id: int) -> bool:
        async with self._change() as conn:
            bank_id, signal_type = await self._bank(conn, name)
            table = _entry_table(signal_type)
            stmt = table.delete().where(table.c.id == entry_id, table.c.bank_id == bank_id)
            removed = (await conn.execute(stmt)).rowcount == 1
            if removed:
                await self._log(conn, name, "remove", entry_id, entry_id, signal_type)
        return removed

    async def reattribute(self, name: str, entry_id: int, *, external_id: str | None, note: str | None) -> bool:
        """Give bank `name`'s entry `entry_id` another source (external id and note), keeping its id. Logged as its
        removal and its addition, the changes every process already replays: each drops its copy of the entry
        and reads the row again, so matches everywhere name the new source."""
        async with self._change() as conn:
            bank_id, signal_type = await self._bank(conn, name)
            table = _entry_table(signal_type)
            values = {"external_id": external_id, "note": note[:_MAX_NOTE] if note else None}
            stmt = table.update().where(table.c.id == entry_id, table.c.bank_id == bank_id).values(**values)
            changed = (await conn.execute(stmt)).rowcount == 1
            if changed:
                await self._log(conn, name, "remove", entry_id, entry_id, signal_type)
                await self._log(conn, name, "add", entry_id, entry_id, signal_type)
        return changed

    async def find_entry(self, name: str, value: str) -> tuple[int, str | None, str | None] | None:
        """(id, external id, note) of bank `name`'s entry holding `value` (validated for its signal type), or
        None."""
        async with self.engine.connect() as conn:
            bank_id, signal_type = await self._bank(conn, name)
            table = _entry_table(signal_type)
            column = "pdq" if signal_type == PDQ else "value_key"
            key = _stored(signal_type, value)[column]
            query = sa.select(table.c.id, table.c.external_id, table.c.note)
            found = (await conn.execute(query.where(table.c.bank_id == bank_id, table.c[column] == key))).first()
        return None if found is None else (int(found.id), found.external_id, found.note)

    async def signal_type(self, name: str) -> str:
        """The signal type of bank `name`; BankError if there is none."""
        async with self.engine.connect() as conn:
            return (await self._bank(conn, name))[1]

    async def add_entries(self, name: str, entries: Sequence[EntryInput], *, actor: str | None = None) -> int:
        """Add entries validated for the bank's signal type, in one transaction; returns how many were new (a
        known hash is skipped). The change log keeps `actor` when a person imported them (cli, admin)."""
        stamp = syntax.now()
        insert = sqlite.insert if self._sqlite else postgresql.insert
        ids: list[int] = []
        async with self._change() as conn:
            bank_id, signal_type = await self._bank(conn, name)
            table, key = (bank_entries, "pdq") if signal_type == PDQ else (bank_signals, "value_key")
            rows = [
                {"bank_id": bank_id, **_stored(signal_type, e.value), "external_id": e.external_id,
                 "note": e.note[:_MAX_NOTE] if e.note else None, "added_at": stamp}
                for e in entries
            ]  # fmt: skip
            for start in range(0, len(rows), _INSERT_CHUNK):
                stmt = (
                    insert(table)
                    .values(rows[start : start + _INSERT_CHUNK])
                    .on_conflict_do_nothing(index_elements=["bank_id", key])
                    .returning(table.c.id)
                )
                ids.extend(int(i) for i in (await conn.execute(stmt)).scalars())
            if ids:
                await self._log(conn, name, "add", min(ids), max(ids), signal_type, actor)
        return len(ids)

    async def head(self) -> int:
        """The newest change id (0 when there is none)."""
        async with self.engine.connect() as conn:
            newest = sa.select(sa.func.coalesce(sa.func.max(bank_changes.c.id), 0))
            return int((await conn.execute(newest)).scalar_one())

    async def changes_after(self, change_id: int, limit: int = 1000) -> list[BankChange]:
        query = sa.select(bank_changes).where(bank_changes.c.id > change_id).order_by(bank_changes.c.id).limit(limit)
        async with self.engine.connect() as conn:
            return [_change(r) for r in await conn.execute(query)]

    async def changes_by_people(self, *, before: int | None = None, limit: int = 100) -> list[BankChange]:
        """Changes a person made (imports, drops: those with an actor), newest first, before id `before`."""
        query = sa.select(bank_changes).where(bank_changes.c.actor.is_not(None))
        if before is not None:
            query = query.where(bank_changes.c.id < before)
        async with self.engine.connect() as conn:
            return [_change(r) for r in await conn.execute(query.order_by(bank_changes.c.id.desc()).limit(limit))]

    async def index_rows(self, bank: str | None = None, first: int = 0, last: int | None = None) -> list[IndexRow]:
        """Entries as PdqIndex rows: every bank, or one bank's entries with ids in [first, last]."""
        return [row async for batch in self.index_row_batches(bank, first, last) for row in batch]

    async def index_row_batches(
        self, bank: str | None = None, first: int = 0, last: int | None = None, size: int = 50_000
    ) -> AsyncGenerator[list[IndexRow]]:
        """`index_rows`, `size` at a time: loading 10M entries never holds them all as Python objects."""
        query = sa.select(
            bank_entries.c.pdq, hash_banks.c.name, bank_entries.c.id, bank_entries.c.external_id, bank_entries.c.note
        ).join(hash_banks, hash_banks.c.id == bank_entries.c.bank_id)
        async with self.engine.connect() as conn:
            result = await conn.stream(query.where(*_entries_in(bank_entries, bank, first, last)))
            async for part in result.partitions(size):
                yield [(r[0], r[1], str(r[2]), r[3], r[4]) for r in part]

    async def signal_rows(
        self, bank: str | None = None, first: int = 0, last: int | None = None
    ) -> list[tuple[str, IndexRow]]:
        """Entries of the banks that are not PDQ, as (signal type, row): every such bank, or one bank's entries
        with ids in [first, last]."""
        query = sa.select(
            hash_banks.c.signal_type,
            bank_signals.c.value,
            hash_banks.c.name,
            bank_signals.c.id,
            bank_signals.c.external_id,
            bank_signals.c.note,
        ).join(hash_banks, hash_banks.c.id == bank_signals.c.bank_id)
        async with self.engine.connect() as conn:
            result = await conn.stream(query.where(*_entries_in(bank_signals, bank, first, last)))
            return [(r[0], (r[1], r[2], str(r[3]), r[4], r[5])) async for r in result]


def _since(changed: dict[str, str], bank: Any) -> str | None:
    """The bank's latest change, unless it came before the bank was made (a dropped bank of the same name)."""
    at = changed.get(bank.name)
    return at if at is not None and at >= bank.created_at else None


def _change(row: Any) -> BankChange:
    return BankChange(row.id, row.bank, row.op, row.first_id, row.last_id, row.signal_type, row.created_at, row.actor)


def _entries_in(table: sa.Table, bank: str | None, first: int, last: int | None) -> list[Any]:
    """Conditions for `table`'s entries of `bank` (every bank when None) with ids in [first, last]."""
    conditions: list[Any] = [table.c.id >= first]
    if bank is not None:
        conditions.append(hash_banks.c.name == bank)
    if last is not None:
        conditions.append(table.c.id <= last)
    return conditions


def _entry_table(signal_type: str) -> sa.Table:
    return bank_entries if signal_type == PDQ else bank_signals


def _stored(signal_type: str, value: str) -> dict[str, str]:
    """The columns that hold `value` in its signal type's table."""
    if signal_type == PDQ:
        return {"pdq": value}
    if signal_type == VPDQ:  # too long for a btree key: unique by the hash of its canonical form
        return {"value": value, "value_key": signal_key(parse_signal(value))}
    return {"value": value, "value_key": value}
