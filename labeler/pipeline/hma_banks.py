"""`labeler bank …` against HMA: the same commands and answers as embedded banks, and imports that can be re-run.

HMA keeps no signal type or note per bank, and has no way to list a bank's content, so both are kept here
(`labeler.store.hma_schema`). An import records each hash before it is sent and HMA's content id once it has
landed; a re-run skips what landed, and resolves what was in flight when the last run stopped by reading HMA's
content upward from the highest id seen before it was sent (HMA's ids only grow), so no hash is added twice.

HMA adds one content item per request (`POST /c/bank/<B>/signal`, one database commit each), so the only way
to go faster is several requests at once (`concurrency`); they are sent in chunks, and every chunk is recorded
before and after, so a killed import leaves at most one chunk in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from labeler.pipeline.banks import BankError, EntryInput, check_bank_name
from labeler.pipeline.match.base import MatcherError, MatcherUnavailable, MatchFailure
from labeler.pipeline.match.hma import FILLER_BANK, HMA_SIGNAL_TYPES, HmaMatcher
from labeler.pipeline.signals import PDQ
from labeler.protocol import syntax
from labeler.store.hma_schema import hma_banks, hma_imports

CHUNK: Final = 64  # adds in flight between two records
DEFAULT_CONCURRENCY: Final = 8
_GAP: Final = 64  # consecutive missing content ids after which nothing newer exists
_PROBES: Final = 16  # content reads at once while resolving


@dataclass
class ImportReport:
    landed: int = 0
    skipped: int = 0  # already in the bank (an earlier run), or repeated in the file
    recovered: int = 0  # in flight when an earlier run stopped, found landed
    failed: list[tuple[EntryInput, str]] = field(default_factory=list)
    stopped: str | None = None  # HMA became unavailable: the rest was not sent; a re-run resumes


class HmaBanks:
    """HMA's banks as `labeler bank` manages them, with what HMA cannot hold kept in our database."""

    def __init__(self, hma: HmaMatcher, engine: AsyncEngine) -> None:
        self.hma = hma
        self.engine = engine

    async def create(self, name: str, note: str | None = None, *, signal_type: str = PDQ) -> None:
        check_bank_name(name)
        _check_signal(signal_type)
        try:
            await self.hma.create_bank(name)
        except MatcherError as e:
            if e.status == 403:
                raise BankError(f"bank {name!r} already exists") from None
            raise
        async with self.engine.begin() as conn:
            await conn.execute(hma_banks.delete().where(hma_banks.c.name == name))
            await conn.execute(hma_imports.delete().where(hma_imports.c.bank == name))  # an older bank's
            values = {"name": name, "signal_type": signal_type, "note": note, "created_at": syntax.now()}
            await conn.execute(hma_banks.insert().values(**values))

    async def all_banks(self) -> list[dict[str, Any]]:
        """HMA's banks (not the reserved filler) with the signal type and note given at `bank create`."""
        async with self.engine.connect() as conn:
            known = {r.name: r for r in await conn.execute(sa.select(hma_banks))}
        rows = []
        for bank in await self.hma.list_banks():
            if bank.name == FILLER_BANK:
                continue
            ours = known.get(bank.name)
            rows.append(
                {
                    "name": bank.name,
                    "signal_type": ours.signal_type if ours is not None else None,
                    "note": ours.note if ours is not None else None,
                    "matching_enabled_ratio": bank.matching_enabled_ratio,
                }
            )
        return rows

    async def drop(self, name: str) -> None:
        await self._require(name)
        await self.hma.delete_bank(name)
        async with self.engine.begin() as conn:
            await conn.execute(hma_banks.delete().where(hma_banks.c.name == name))
            await conn.execute(hma_imports.delete().where(hma_imports.c.bank == name))

    async def remove_entry(self, name: str, content_id: int) -> bool:
        """Delete content `content_id` of bank `name`; False when the bank holds no such content."""
        await self._require(name)
        try:
            record = await self.hma.content(name, content_id)
        except MatcherError as e:
            if e.status == 404:
                return False
            raise
        if not isinstance(record.get("bank"), dict) or record["bank"].get("name") != name:
            return False  # HMA would delete another bank's content through this bank's path
        removed = await self.hma.delete_content(name, content_id)
        async with self.engine.begin() as conn:
            await conn.execute(
                hma_imports.delete().where(hma_imports.c.bank == name, hma_imports.c.content_id == content_id)
            )
        return removed

    async def signal_type_for(self, name: str, wanted: str | None, create: bool) -> str:
        """The signal type to read an import as: the bank's (given at `bank create`), which `--signal` must agree
        with; a bank made elsewhere takes `--signal` (default pdq)."""
        if name not in await self._names():
            if not create:
                raise BankError(f"no bank named {name!r} (--create makes it)")
            return _check_signal(wanted or PDQ)
        async with self.engine.connect() as conn:
            recorded = await conn.scalar(sa.select(hma_banks.c.signal_type).where(hma_banks.c.name == name))
        if recorded is not None and wanted is not None and wanted != recorded:
            raise BankError(f"bank {name} holds {recorded} hashes, not {wanted}")
        return _check_signal(wanted or recorded or PDQ)

    async def import_entries(
        self,
        name: str,
        signal_type: str,
        entries: Sequence[EntryInput],
        *,
        create: bool = False,
        concurrency: int = DEFAULT_CONCURRENCY,
        progress: Callable[[int], None] = lambda n: None,
    ) -> ImportReport:
        """Add every entry not already in the bank; `progress(n)` is called as entries are done."""
        _check_signal(signal_type)
        if name not in await self._names():
            if not create:
                raise BankError(f"no bank named {name!r} (--create makes it)")
            await self.create(name, signal_type=signal_type)
        report = ImportReport()
        known = await self._known(name, signal_type)
        report.recovered = await self._resolve_in_flight(name, signal_type, known)
        unsent: dict[str, EntryInput] = {}
        for entry in entries:
            if entry.value not in known:
                unsent.setdefault(entry.value, entry)
        todo = list(unsent.values())
        report.skipped = len(entries) - len(todo)
        progress(report.skipped)
        seen = max(known.values(), default=0) or await self.newest_content_id(name)
        limit = asyncio.Semaphore(concurrency)

        async def add(entry: EntryInput) -> int | MatchFailure:
            async with limit:
                try:
                    content_id = await self.hma.add_signal(
                        name, entry.value, signal_type=signal_type, note=entry.note, external_id=entry.external_id
                    )
                except MatchFailure as e:
                    return e
                finally:
                    progress(1)
                return content_id

        for start in range(0, len(todo), CHUNK):
            chunk = todo[start : start + CHUNK]
            await self._record_in_flight(name, signal_type, [e.value for e in chunk], seen)
            results = await asyncio.gather(*(add(e) for e in chunk))
            landed = [(e.value, r) for e, r in zip(chunk, results, strict=True) if isinstance(r, int)]
            refused = [(e, r) for e, r in zip(chunk, results, strict=True) if isinstance(r, MatcherError)]
            await self._record(name, signal_type, landed, [e.value for e, _ in refused])
            report.landed += len(landed)
            report.failed += [(e, r.message) for e, r in refused]
            seen = max([seen, *(content_id for _, content_id in landed)])
            unavailable = [r for r in results if isinstance(r, MatcherUnavailable)]
            if unavailable:  # these may have landed: left in flight for the next run to resolve
                report.stopped = unavailable[0].message
                break
        return report

    async def _known(self, name: str, signal_type: str) -> dict[str, int]:
        """Hashes this bank holds by our records: value → content id (0 while in flight). Records that HMA no
        longer bears out (the bank was deleted and made again outside `labeler bank`) are forgotten."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(hma_imports.c.value, hma_imports.c.content_id).where(
                    hma_imports.c.bank == name, hma_imports.c.signal_type == signal_type
                )
            )
            known = {r.value: int(r.content_id or 0) for r in rows}
        newest = max(known.values(), default=0)
        if newest and not await self._holds(name, newest, signal_type, {v for v, c in known.items() if c == newest}):
            async with self.engine.begin() as conn:
                await conn.execute(hma_imports.delete().where(hma_imports.c.bank == name))
            return {}
        return known

    async def _resolve_in_flight(self, name: str, signal_type: str, known: dict[str, int]) -> int:
        """Find the adds a stopped run had in flight: read HMA's content from the lowest id they could have upward,
        until all are found or `_GAP` ids in a row are missing. Found ones are recorded; the rest never landed."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(hma_imports.c.value, hma_imports.c.after_id).where(
                    hma_imports.c.bank == name,
                    hma_imports.c.signal_type == signal_type,
                    hma_imports.c.content_id.is_(None),
                )
            )
            pending = {r.value: int(r.after_id) for r in rows}
        if not pending:
            return 0
        found: list[tuple[str, int]] = []
        next_id, missing = min(pending.values()) + 1, 0
        while len(found) < len(pending) and missing < _GAP:
            ids = range(next_id, next_id + _PROBES)
            records = await asyncio.gather(*(self._read(name, i) for i in ids))
            for content_id, record in zip(ids, records, strict=True):
                if record is None:
                    missing += 1
                    continue
                missing = 0
                value = _value_in(record, name, signal_type)
                if value is not None and value in pending:
                    found.append((value, content_id))
            next_id += _PROBES
        lost = [v for v in pending if v not in dict(found)]
        await self._record(name, signal_type, found, lost)
        for value in lost:
            known.pop(value, None)
        known.update(found)
        return len(found)

    async def newest_content_id(self, name: str) -> int:
        """An existing content id near the newest (any bank's), found by doubling then halving: the lowest bound
        for ids HMA gives later adds, so resolving them need not read from id 1. An id counts as existing when it
        or one of the next few does, so a deleted item does not stop the search short."""
        low, high = 0, 1
        while await self._exists_near(name, high):
            low, high = high, high * 2
        while high - low > 1:
            mid = (low + high) // 2
            if await self._exists_near(name, mid):
                low = mid
            else:
                high = mid
        return low

    async def _exists_near(self, name: str, content_id: int) -> bool:
        ids = range(content_id, content_id + _PROBES)
        return any(r is not None for r in await asyncio.gather(*(self._read(name, i) for i in ids)))

    async def _read(self, name: str, content_id: int) -> dict[str, Any] | None:
        try:
            return await self.hma.content(name, content_id)
        except MatcherError as e:
            if e.status == 404:
                return None
            raise

    async def _holds(self, name: str, content_id: int, signal_type: str, values: set[str]) -> bool:
        record = await self._read(name, content_id)
        return record is not None and _value_in(record, name, signal_type) in values

    async def _record_in_flight(self, name: str, signal_type: str, values: list[str], after_id: int) -> None:
        if values:
            rows = [{"bank": name, "signal_type": signal_type, "value": v, "after_id": after_id} for v in values]
            async with self.engine.begin() as conn:
                await conn.execute(hma_imports.insert(), rows)

    async def _record(self, name: str, signal_type: str, landed: list[tuple[str, int]], lost: list[str]) -> None:
        """Landed adds get their content id; adds that never landed are forgotten."""
        row = (hma_imports.c.bank == name) & (hma_imports.c.signal_type == signal_type)
        async with self.engine.begin() as conn:
            for value, content_id in landed:
                stmt = hma_imports.update().where(row, hma_imports.c.value == value).values(content_id=content_id)
                await conn.execute(stmt)
            if lost:
                await conn.execute(hma_imports.delete().where(row, hma_imports.c.value.in_(lost)))

    async def _names(self) -> set[str]:
        return {b.name for b in await self.hma.list_banks()}

    async def _require(self, name: str) -> None:
        if name == FILLER_BANK or name not in await self._names():
            raise BankError(f"no bank named {name!r}")


def _value_in(record: dict[str, Any], name: str, signal_type: str) -> str | None:
    """The hash of `signal_type` in HMA's content record, if the content is in bank `name`."""
    bank, signals = record.get("bank"), record.get("signals")
    if not isinstance(bank, dict) or bank.get("name") != name or not isinstance(signals, dict):
        return None
    value = signals.get(HMA_SIGNAL_TYPES[signal_type])
    return value if isinstance(value, str) else None


def _check_signal(signal_type: str) -> str:
    if signal_type not in HMA_SIGNAL_TYPES:
        kinds = " and ".join(HMA_SIGNAL_TYPES)
        raise BankError(f"HMA banks hold {kinds} hashes here, not {signal_type}; use the embedded matcher")
    return signal_type
