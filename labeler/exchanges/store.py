"""Configured exchanges, their checkpoints, and applying a fetched page to the exchange's bank.

A page is applied in an order that makes applying it again harmless, so a crash anywhere in between (before the
checkpoint moved past the page) costs nothing but the repeat: first the bank entries of hashes the exchange
withdrew or changed are removed or given another source, then the new hashes are added (a known hash is skipped),
then the record of what the exchange holds (`exchange_entries`) is written. A bank entry is removed only when no
entry of any exchange feeding the bank still carries its hash, and only if an exchange put it there (its note), so
a hash also imported by hand stays. Which exchange put it there does not decide the removal: when several carry
one hash, the one that banked it first may withdraw it before the others, and the last to withdraw it must still
remove it. It decides the entry's source, though (its note and external id, which matches show and feedback is
sent to): an entry whose source no longer carries the hash is given one that does.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from labeler.exchanges.errors import ExchangeError
from labeler.pipeline.banks import BankError, BankStore, EntryInput
from labeler.pipeline.signals.values import normalised_hash
from labeler.protocol import syntax
from labeler.store.engine import StoreError, is_sqlite, write_transaction
from labeler.store.exchange_schema import exchange_entries, exchanges

log = logging.getLogger(__name__)

EXCHANGE_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
FEEDBACK: Final = "feedback"  # the option that switches feedback on (`labeler exchange feedback NAME on`)
FEEDBACK_REASON: Final = "feedback_reason"  # the reason given with a rejection, where the exchange asks for one
_MAX_ERROR: Final = 500
# In a checkpoint: how many fetches in a row stopped at an unreadable page (`fetch` keeps it there, beside the
# type's own keys, until a fetch reaches the exchange's end).
UNREADABLE: Final = "unreadable"


@dataclass(frozen=True)
class ExchangeUpdate:
    """One entry as an exchange reports it: its id there, whether it was deleted, its hashes by our signal type."""

    remote_id: str
    deleted: bool
    signals: dict[str, str]


@dataclass(frozen=True)
class Exchange:
    name: str
    type: str
    bank: str
    options: dict[str, Any]
    checkpoint: dict[str, Any] | None
    created_at: str
    last_success_at: str | None
    last_error: str | None
    fetch_errors: int
    entries: int = 0

    @property
    def unreadable(self) -> int:
        """How many fetches in a row stopped at an unreadable page (see `fetch`)."""
        return int((self.checkpoint or {}).get(UNREADABLE, 0))

    @property
    def resume_at(self) -> dict[str, Any] | None:
        """The checkpoint as the exchange's type wrote it (None: from the start)."""
        mine = {k: v for k, v in (self.checkpoint or {}).items() if k != UNREADABLE}
        return mine or None

    @property
    def feedback(self) -> bool:
        """Whether moderators' verdicts on matches against its entries are sent back to it (off by default)."""
        return self.options.get(FEEDBACK) is True


@dataclass
class Applied:
    added: int = 0
    removed: int = 0
    invalid: list[str] = field(default_factory=list)  # remote ids whose hash was not well formed


def check_exchange_name(name: str) -> str:
    if EXCHANGE_NAME.fullmatch(name) is None:
        raise ExchangeError(f"exchange names are lowercase letters, digits, '-' and '_' (≤ 63): {name!r}")
    return name


def entry_note(name: str) -> str:
    """The note of bank entries exchange `name` added: how a removal tells them from hashes imported by hand."""
    return f"exchange:{name}"


def exchange_of_note(note: str | None) -> str | None:
    """The exchange that added a bank entry with `note` (see `entry_note`); None for entries added otherwise."""
    prefix = entry_note("")
    return note.removeprefix(prefix) if note and note.startswith(prefix) and len(note) > len(prefix) else None


class ExchangeStore:
    def __init__(self, engine: AsyncEngine, banks: BankStore) -> None:
        self.engine = engine
        self.banks = banks

    async def add(
        self,
        name: str,
        type_: str,
        bank: str,
        options: dict[str, Any],
        *,
        carries: Sequence[str],
        within: Callable[[], object] = lambda: None,
    ) -> Exchange:
        """Add exchange `name` of type `type_` (which carries the signal types `carries`) feeding `bank`. The name is
        the table's primary key, so of two processes adding one name at once the database refuses the second.
        `within` runs inside the adding transaction once the row is in (and holds the name), so the row is kept
        only if it returns: `labeler exchange add` moves the credentials file in place there."""
        check_exchange_name(name)
        try:
            signal_type = await self.banks.signal_type(bank)
        except BankError as exc:
            raise ExchangeError(str(exc)) from None
        if signal_type not in carries:
            carried = ", ".join(carries)
            raise ExchangeError(f"bank {bank!r} holds {signal_type} hashes; {type_} carries {carried}")
        values = {"name": name, "type": type_, "bank": bank, "options": options, "created_at": syntax.now()}
        try:
            async with write_transaction(self.engine, "exchange add") as conn:
                row = (await conn.execute(exchanges.insert().values(**values).returning(*exchanges.c))).one()
                within()
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise ExchangeError(f"exchange {name!r} already exists") from None
            raise
        return _exchange(row, 0)  # what the transaction wrote: nothing read after it can fail once it is kept

    async def check_new(self, name: str, type_: str, bank: str, *, carries: Sequence[str]) -> None:
        """ExchangeError unless `add` can add this exchange now: checked before asking anyone for credentials, by
        the insert `add` makes, rolled back."""
        with contextlib.suppress(_RolledBack):
            await self.add(name, type_, bank, {}, carries=carries, within=_roll_back)

    async def all(self, name: str | None = None) -> list[Exchange]:
        """Every exchange, or only `name`'s (its entries alone counted, not the whole table's)."""
        counts = sa.select(exchange_entries.c.exchange, sa.func.count()).group_by(exchange_entries.c.exchange)
        rows = sa.select(exchanges).order_by(exchanges.c.name)
        if name is not None:
            counts, rows = counts.where(exchange_entries.c.exchange == name), rows.where(exchanges.c.name == name)
        async with self.engine.connect() as conn:
            per_exchange = {str(n): int(c) for n, c in await conn.execute(counts)}
            return [_exchange(r, per_exchange.get(r.name, 0)) for r in await conn.execute(rows)]

    async def get(self, name: str) -> Exchange:
        found = await self.all(name)
        if not found:
            raise ExchangeError(f"no exchange named {name!r}")
        return found[0]

    async def remove(self, name: str, now: float | None = None) -> int:
        """Forget exchange `name` and its record of entries (its bank keeps them); returns how many it had. Refused
        while a process holds the exchange's lease: its fetch would go on adding entries and records under a name
        that no longer exists (and that a new exchange of the same name would inherit)."""
        async with write_transaction(self.engine, "exchange remove") as conn:
            query = sa.select(exchanges.c.lease_owner, exchanges.c.lease_expires_at).where(exchanges.c.name == name)
            had = (await conn.execute(query)).first()
            if had is None:
                raise ExchangeError(f"no exchange named {name!r}")
            if had.lease_expires_at is not None and had.lease_expires_at > (time.time() if now is None else now):
                raise ExchangeError(
                    f"exchange {name!r} is being fetched by {had.lease_owner}; remove it when that fetch is done"
                )
            mine = exchange_entries.c.exchange == name
            removed = (await conn.execute(exchange_entries.delete().where(mine))).rowcount
            await conn.execute(exchanges.delete().where(exchanges.c.name == name))
        return int(removed)

    async def set_options(self, name: str, options: dict[str, Any]) -> Exchange:
        """Replace exchange `name`'s options (its feedback switch, …)."""
        async with write_transaction(self.engine, "exchange options") as conn:
            changed = await conn.execute(exchanges.update().where(exchanges.c.name == name).values(options=options))
            if changed.rowcount != 1:
                raise ExchangeError(f"no exchange named {name!r}")
        return await self.get(name)

    async def entry_value(self, name: str, remote_id: str) -> str | None:
        """The hash exchange `name`'s entry `remote_id` carries now; None when the exchange no longer has it."""
        mine = sa.and_(exchange_entries.c.exchange == name, exchange_entries.c.remote_id == remote_id)
        async with self.engine.connect() as conn:
            return (await conn.execute(sa.select(exchange_entries.c.value).where(mine))).scalar_one_or_none()

    async def save_checkpoint(self, name: str, checkpoint: dict[str, Any], *, complete: bool) -> None:
        """Move the checkpoint past a page; `complete` when the fetch reached the exchange's end."""
        values: dict[str, Any] = {"checkpoint": checkpoint}
        if complete:
            values |= {"last_success_at": syntax.now(), "last_error": None}
        async with write_transaction(self.engine, "exchange checkpoint") as conn:
            await conn.execute(exchanges.update().where(exchanges.c.name == name).values(**values))

    async def record_error(self, name: str, message: str) -> None:
        values = {"last_error": message[:_MAX_ERROR], "fetch_errors": exchanges.c.fetch_errors + 1}
        async with write_transaction(self.engine, "exchange error") as conn:
            await conn.execute(exchanges.update().where(exchanges.c.name == name).values(**values))

    async def claim(self, owner: str, now: float, lease_seconds: float, *, name: str | None = None) -> str | None:
        """Take the lease of exchange `name` (any exchange that is due when None) unless another process holds
        it; returns the exchange's name, or None when there is nothing to take. One conditional UPDATE, so two
        processes never both win."""
        free = sa.or_(exchanges.c.lease_expires_at.is_(None), exchanges.c.lease_expires_at < now)
        if name is None:
            due = sa.or_(exchanges.c.next_fetch_at.is_(None), exchanges.c.next_fetch_at <= now)
            async with self.engine.connect() as conn:
                first = exchanges.c.next_fetch_at.asc().nulls_first()  # never fetched: due the longest
                query = sa.select(exchanges.c.name).where(free, due).order_by(first, exchanges.c.name).limit(1)
                name = (await conn.execute(query)).scalar_one_or_none()
            if name is None:
                return None
        lease = {"lease_owner": owner, "lease_expires_at": now + lease_seconds}
        async with write_transaction(self.engine, "exchange lease") as conn:
            taken = await conn.execute(exchanges.update().where(exchanges.c.name == name, free).values(**lease))
        return name if taken.rowcount == 1 else None

    async def renew(self, name: str, owner: str, until: float) -> None:
        mine = sa.and_(exchanges.c.name == name, exchanges.c.lease_owner == owner)
        async with write_transaction(self.engine, "exchange lease") as conn:
            await conn.execute(exchanges.update().where(mine).values(lease_expires_at=until))

    async def release(self, name: str, owner: str, next_fetch_at: float | None) -> None:
        """Give the lease back; the schedule fetches the exchange again at `next_fetch_at` (None: unchanged)."""
        values: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}
        if next_fetch_at is not None:
            values["next_fetch_at"] = next_fetch_at
        mine = sa.and_(exchanges.c.name == name, exchanges.c.lease_owner == owner)
        async with write_transaction(self.engine, "exchange lease") as conn:
            await conn.execute(exchanges.update().where(mine).values(**values))

    async def apply(self, exchange: Exchange, signal_type: str, updates: Sequence[ExchangeUpdate]) -> Applied:
        """Apply one page of updates to the exchange's bank (see the module docstring for the order)."""
        applied = Applied()
        wanted: dict[str, str | None] = {}  # remote id → the hash it now carries, None when it carries none
        for update in updates:
            raw = None if update.deleted else update.signals.get(signal_type)
            try:
                wanted[update.remote_id] = None if raw is None else normalised_hash(signal_type, raw)
            except ValueError:
                applied.invalid.append(update.remote_id)
                wanted[update.remote_id] = None
        if not wanted:
            return applied
        mine = exchange_entries.c.exchange == exchange.name
        async with self.engine.connect() as conn:
            known = sa.select(exchange_entries.c.remote_id, exchange_entries.c.value)
            held = dict((await conn.execute(known.where(mine, exchange_entries.c.remote_id.in_(wanted)))).all())
            changed = {rid: value for rid, value in wanted.items() if held.get(rid) != value}
            left = {held[rid] for rid in changed if rid in held}  # hashes entries of this page no longer carry
            carriers = await self._carriers(conn, exchange.bank, left, exclude=(exchange.name, changed))
        for rid, value in changed.items():
            if value is not None and value in left:
                carriers.setdefault(value, set()).add((exchange.name, rid))
        for value in left:
            applied.removed += await self._follow_carriers(exchange.bank, value, carriers.get(value, set()))
        new = {value: rid for rid, value in changed.items() if value is not None}
        if new:
            note = entry_note(exchange.name)
            entries = [EntryInput(value, external_id=rid, note=note) for value, rid in new.items()]
            applied.added = await self.banks.add_entries(exchange.bank, entries)
        await self._record(exchange.name, wanted)
        return applied

    async def _follow_carriers(self, bank: str, value: str, carriers: set[tuple[str, str]]) -> int:
        """Make `bank`'s entry of `value`, if an exchange put it there, agree with the exchange entries that carry
        it now (`carriers`: exchange name, remote id): removed when none does (returns 1), otherwise naming one
        of them if it names none, so a match and its feedback go to an exchange that still has the entry."""
        found = await self.banks.find_entry(bank, value)
        if found is None or exchange_of_note(found[2]) is None:
            return 0  # not banked, or imported by hand: not the exchanges' to change
        entry_id, external_id, note = found
        if not carriers:
            return int(await self.banks.remove_entry(bank, entry_id))
        if (exchange_of_note(note), external_id) not in carriers:
            name, remote_id = min(carriers)
            await self.banks.reattribute(bank, entry_id, external_id=remote_id, note=entry_note(name))
        return 0

    async def _carriers(
        self, conn: Any, bank: str, values: set[str], *, exclude: tuple[str, dict[str, str | None]]
    ) -> dict[str, set[tuple[str, str]]]:
        """Which entries (exchange name, remote id) of the exchanges feeding `bank` still carry each of `values`,
        other than the entries of this page that change (`exclude`: this exchange's name and the changing ids)."""
        if not values:
            return {}
        name, changing = exclude
        query = (
            sa.select(exchange_entries.c.value, exchange_entries.c.exchange, exchange_entries.c.remote_id)
            .join(exchanges, exchanges.c.name == exchange_entries.c.exchange)
            .where(exchanges.c.bank == bank, exchange_entries.c.value.in_(values))
            .where(sa.not_(sa.and_(exchange_entries.c.exchange == name, exchange_entries.c.remote_id.in_(changing))))
        )
        carriers: dict[str, set[tuple[str, str]]] = {}
        for value, exchange, remote_id in await conn.execute(query):
            carriers.setdefault(str(value), set()).add((str(exchange), str(remote_id)))
        return carriers

    async def _record(self, name: str, wanted: dict[str, str | None]) -> None:
        stamp = syntax.now()
        insert = sqlite.insert if is_sqlite(self.engine) else postgresql.insert
        gone = [rid for rid, value in wanted.items() if value is None]
        rows = [{"exchange": name, "remote_id": rid, "value": v, "fetched_at": stamp} for rid, v in wanted.items() if v]
        async with write_transaction(self.engine, "exchange entries") as conn:
            if gone:
                mine = exchange_entries.c.exchange == name
                await conn.execute(exchange_entries.delete().where(mine, exchange_entries.c.remote_id.in_(gone)))
            if rows:
                stmt = insert(exchange_entries).values(rows)
                excluded = stmt.excluded
                update = {"value": excluded.value, "fetched_at": excluded.fetched_at}
                await conn.execute(stmt.on_conflict_do_update(index_elements=["exchange", "remote_id"], set_=update))


class _RolledBack(Exception):
    """Leaves `ExchangeStore.add`'s transaction undone: `check_new` asks the insert, not to keep it."""


def _roll_back() -> None:
    raise _RolledBack


def _exchange(row: Any, entries: int) -> Exchange:
    return Exchange(
        row.name, row.type, row.bank, dict(row.options), row.checkpoint, row.created_at, row.last_success_at,
        row.last_error, int(row.fetch_errors), entries,
    )  # fmt: skip
