"""Bank imports started from the console, running in the serving process while the operator watches.

An upload is parsed and checked whole before this starts (`labeler.console.bank_upload`); here the entries are
added by `labeler.pipeline.bank_import.import_entries`, what `labeler bank import` runs, as a background task of
the serving process, and the status page reads the counts it updates after each batch.

- One import at a time per process: a second upload while one runs is refused, naming the running one. Imports in
  two processes (or the CLI at the same time) are still safe: each batch is one bank change under the change
  log's lock, and a hash already in the bank is skipped, so the same hash lands once.
- If the process stops mid-import (a crash, a restart, a deploy), the batches committed so far stay and the rest
  is lost with the process, and so is this record of it; uploading the same file again finishes the import
  (what is there already is skipped). Stopping the app cancels a running import the same way.
- The last few imports are remembered for their status pages, in memory only; the bank change log keeps who
  imported what for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from labeler.pipeline.bank_import import import_entries
from labeler.pipeline.banks import BankError, BankStore, EntryInput
from labeler.store.engine import StoreError

KEPT: Final = 20  # finished imports whose status pages still answer

log = logging.getLogger(__name__)


class ImportBusy(Exception):
    """An import is running in this process; `running` is it."""

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
    state: str = "running"  # running | done | failed
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


class BankImports:
    """The serving process's console imports: at most one running, the last KEPT remembered."""

    def __init__(self, store: BankStore) -> None:
        self.store = store
        self._imports: OrderedDict[str, BankImport] = OrderedDict()
        self._task: asyncio.Task[None] | None = None

    def running(self) -> BankImport | None:
        return next((i for i in self._imports.values() if i.state == "running"), None)

    def get(self, import_id: str) -> BankImport | None:
        return self._imports.get(import_id)

    def recent(self) -> list[BankImport]:
        """Newest first."""
        return list(reversed(self._imports.values()))

    def start(
        self,
        bank: str,
        entries: Sequence[EntryInput],
        *,
        filename: str,
        signal_type: str,
        create: bool,
        actor: str,
    ) -> BankImport:
        """Start importing `entries` (already validated) into `bank`; ImportBusy if an import is running."""
        running = self.running()
        if running is not None:
            raise ImportBusy(running)
        job = BankImport(secrets.token_hex(8), bank, filename, signal_type, actor, len(entries), create)
        self._imports[job.id] = job
        while len(self._imports) > KEPT:
            self._imports.popitem(last=False)
        self._task = asyncio.create_task(self._run(job, entries), name=f"console bank import {job.id}")
        return job

    async def _run(self, job: BankImport, entries: Sequence[EntryInput]) -> None:
        log.info("%s imports %d entries into bank %s (%s)", job.actor, job.total, job.bank, job.filename)
        try:
            await import_entries(
                self.store,
                job.bank,
                entries,
                create=job.created,
                signal_type=job.signal_type,
                step=job.step,
                actor=job.actor,
            )
        except (BankError, StoreError) as exc:
            job.state, job.error = "failed", str(exc)
        except asyncio.CancelledError:
            job.state, job.error = "failed", "the labeler stopped"
            raise
        except Exception:
            log.exception("console bank import %s failed", job.id)
            job.state, job.error = "failed", "an unexpected error (the labeler's log has it)"
        else:
            job.state = "done"
        finally:
            job.finished = time.time()
            log.info("bank import %s into %s: %s, %d of %d new", job.id, job.bank, job.state, job.landed, job.total)

    async def aclose(self) -> None:
        """Cancel a running import (its committed batches stay) and wait for it to stop."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
