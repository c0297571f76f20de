"""Bank imports started from the console, running in the serving process that took the upload, their progress
in the database (`console_imports`) so that every serving process shows it.

An upload is parsed and checked whole before this starts (`labeler.console.bank_upload`); here the entries are
added by `labeler.pipeline.bank_import.import_entries`, what `labeler bank import` runs, as a background task of
the serving process. The task writes the import's row after each batch, and at least every RENEW_SECONDS to
extend its lease (LEASE_SECONDS): a row still `running` past its lease was left by a process that stopped
without finishing (a crash, a kill, a lost database connection), and every process shows it as `interrupted`.
Stopping the app cancels a running import and marks it interrupted at once.

- One import at a time, across the processes sharing the database: an upload while an import's lease is alive is
  refused, naming it. The CLI may still import at the same time; that is safe, as each batch is one bank change
  under the change log's lock and a hash already in the bank is skipped, so the same hash lands once.
- The batches committed before an interruption stay; uploading the same file again finishes the import (what is
  there already is skipped).
- The last KEPT imports are kept for their status pages; the bank change log keeps who imported what for good.
- Leases are compared with each process's wall clock, so the processes' clocks must agree to within
  LEASE_SECONDS - RENEW_SECONDS (NTP does much better); a process that is only late to renew is shown running
  again at its next write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy as sa

from labeler.pipeline.bank_import import import_entries
from labeler.pipeline.banks import BankError, BankStore, EntryInput
from labeler.store.console_schema import console_imports
from labeler.store.engine import StoreError, write_transaction

KEPT: Final = 20  # imports whose status pages still answer
LEASE_SECONDS: Final = 20.0  # a running import unwritten for this long was left by a stopped process
RENEW_SECONDS: Final = 5.0  # the running process writes its import's row at least this often
INTERRUPTED: Final = "the labeler process running it stopped before it finished"
_LOCK: Final = "LOCK TABLE console_imports IN SHARE ROW EXCLUSIVE MODE"  # PostgreSQL: one start at a time

log = logging.getLogger(__name__)


class ImportBusy(Exception):
    """An import is running (in this process or another); `running` is it."""

    def __init__(self, running: BankImport) -> None:
        super().__init__(f"an import into {running.bank} is running")
        self.running = running


@dataclass
class BankImport:
    """One import's state, as its status page shows it."""

    id: str
    bank: str
    filename: str
    signal_type: str
    actor: str
    total: int
    created: bool  # the import makes the bank
    done: int = 0  # entries sent so far
    landed: int = 0  # of those, new to the bank
    state: str = "running"  # running | done | failed | interrupted
    error: str = ""
    started: float = field(default_factory=time.time)
    finished: float | None = None

    @property
    def percent(self) -> int:
        return 100 if not self.total else self.done * 100 // self.total

    @property
    def skipped(self) -> int:
        return self.done - self.landed

    def step(self, sent: int, landed: int) -> None:
        self.done += sent
        self.landed += landed

    def row(self, now: float) -> dict[str, Any]:
        """The import's row as the process running it writes it: its lease runs LEASE_SECONDS from `now`."""
        return {
            "id": self.id,
            "bank": self.bank,
            "filename": self.filename,
            "signal_type": self.signal_type,
            "actor": self.actor,
            "total": self.total,
            "creates_bank": self.created,
            "done": self.done,
            "landed": self.landed,
            "state": self.state,
            "error": self.error,
            "started_at": self.started,
            "finished_at": self.finished,
            "lease_expires_at": now + LEASE_SECONDS,
        }

    @classmethod
    def from_row(cls, row: sa.Row[Any], now: float) -> BankImport:
        """The import as any process sees it at `now`: a running row whose lease has run out is interrupted."""
        lapsed = row.state == "running" and row.lease_expires_at < now
        return cls(
            id=row.id,
            bank=row.bank,
            filename=row.filename,
            signal_type=row.signal_type,
            actor=row.actor,
            total=row.total,
            created=row.creates_bank,
            done=row.done,
            landed=row.landed,
            state="interrupted" if lapsed else row.state,
            error=INTERRUPTED if lapsed else row.error,
            started=row.started_at,
            finished=row.finished_at,
        )


class BankImports:
    """The console's imports: the ones this process runs, and every process's in the database."""

    def __init__(self, store: BankStore) -> None:
        self.store = store
        self.engine = store.engine
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, import_id: str) -> BankImport | None:
        query = sa.select(console_imports).where(console_imports.c.id == import_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else BankImport.from_row(row, time.time())

    async def recent(self) -> list[BankImport]:
        """The last KEPT imports, newest first."""
        query = sa.select(console_imports).order_by(console_imports.c.started_at.desc()).limit(KEPT)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        now = time.time()
        return [BankImport.from_row(row, now) for row in rows]

    async def start(
        self,
        bank: str,
        entries: Sequence[EntryInput],
        *,
        filename: str,
        signal_type: str,
        create: bool,
        actor: str,
    ) -> BankImport:
        """Record and start importing `entries` (already validated) into `bank`; ImportBusy if an import is
        running in any process. Older imports past the newest KEPT are forgotten in the same transaction."""
        job = BankImport(secrets.token_hex(8), bank, filename, signal_type, actor, len(entries), create)
        live = sa.and_(console_imports.c.state == "running", console_imports.c.lease_expires_at >= job.started)
        newest = sa.select(console_imports.c.id).order_by(console_imports.c.started_at.desc()).limit(KEPT - 1)
        async with write_transaction(self.engine, "starting a bank import", pg_lock=_LOCK) as conn:
            running = (await conn.execute(sa.select(console_imports).where(live).limit(1))).first()
            if running is not None:
                raise ImportBusy(BankImport.from_row(running, job.started))
            await conn.execute(console_imports.delete().where(console_imports.c.id.not_in(newest)))
            await conn.execute(console_imports.insert().values(job.row(job.started)))
        task = asyncio.create_task(self._run(job, entries), name=f"console bank import {job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: BankImport, entries: Sequence[EntryInput]) -> None:
        log.info("%s imports %d entries into bank %s (%s)", job.actor, job.total, job.bank, job.filename)
        changed = asyncio.Event()

        def step(sent: int, landed: int) -> None:
            job.step(sent, landed)
            changed.set()

        writer = asyncio.create_task(self._write_while_running(job, changed), name=f"bank import {job.id} row")
        try:
            await import_entries(
                self.store,
                job.bank,
                entries,
                create=job.created,
                signal_type=job.signal_type,
                step=step,
                actor=job.actor,
            )
        except (BankError, StoreError) as exc:
            job.state, job.error = "failed", str(exc)
        except asyncio.CancelledError:
            job.state, job.error = "interrupted", "the labeler stopped"
            raise
        except Exception:
            log.exception("console bank import %s failed", job.id)
            job.state, job.error = "failed", "an unexpected error (the labeler's log has it)"
        else:
            job.state = "done"
        finally:
            changed.set()  # the writer sees the import ended and stops (not cancelled: it may be mid-write)
            await writer
            job.finished = time.time()
            await self._write(job)
            log.info("bank import %s into %s: %s, %d of %d new", job.id, job.bank, job.state, job.landed, job.total)

    async def _write_while_running(self, job: BankImport, changed: asyncio.Event) -> None:
        """Write the import's row after each batch, and every RENEW_SECONDS without one, to keep its lease, until
        the import ends (`_run` writes the last state)."""
        while job.state == "running":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), RENEW_SECONDS)
            changed.clear()
            if job.state == "running":
                await self._write(job)

    async def _write(self, job: BankImport) -> None:
        """Write the import's row; if the database refuses, the import goes on and its lease may lapse (shown as
        interrupted) until a later write succeeds."""
        try:
            async with write_transaction(self.engine, "recording a bank import's progress") as conn:
                await conn.execute(
                    console_imports.update().where(console_imports.c.id == job.id).values(job.row(time.time()))
                )
        except StoreError as exc:
            log.warning("bank import %s: %s", job.id, exc)

    async def aclose(self) -> None:
        """Cancel this process's running imports (their committed batches stay) and wait for them to stop."""
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
