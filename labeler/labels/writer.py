"""The label writer: validate → sign → sequence → commit → notify, with group commit.

Callers await `write()`; it returns only after the transaction holding their labels committed, so nothing is
acknowledged that a crash could lose. Signing happens in the caller's turn; a single committer task drains
whatever is queued (up to `max_batch` labels) into one transaction, which is what makes concurrent writers fast.
While one transaction commits (in the database's thread or server), the event loop signs the next labels; so
that there are next labels, many callers queued at once are committed as two halves (`_first_batch_limit`).

A key rotation holds signing for every process (`labeler.store.signing_state`): the store refuses to commit while
it holds, and the committer waits; once the new key is active the store refuses labels signed under the old key
generation, and the committer re-reads the keyring and re-signs them before committing. So no label signed by a
key the DID document no longer names is committed after the document changed.

Signing stays on the event loop on purpose (measured with bench/bench_writer.py on 2 vCPUs): a signer thread
(libsecp256k1 releases the GIL) took ~40 µs a label off the loop but cost more than that in GIL hand-offs, one
per signature; a signer process with batched round trips, and signing and committing as two pipelined stages,
gained nothing either, because the event loop, the commit thread (~37 µs of SQLite work a label) and the signer
then share two cores. With more cores a signer process is the next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from labeler.keys import Keyring
from labeler.protocol import syntax
from labeler.protocol.label import InvalidLabel, Label
from labeler.protocol.storable import Unstorable, check_json, check_text
from labeler.store.labels import CommitResult, LabelAction, LabelStore, StoredLabel
from labeler.store.signing_state import SigningHeld, SigningRotated, current_generation

log = logging.getLogger(__name__)

SPLIT_MIN = 16  # fewer labels queued while the committer was idle always commit together (_first_batch_limit)
HOLD_POLL = 0.05  # seconds between commit attempts while a key rotation holds signing


@dataclass(frozen=True, slots=True)
class LabelRequest:
    """A label to create (or negate, with `neg=True`) on `uri`, and who asks for it and why."""

    uri: str
    val: str
    cid: str | None = None
    neg: bool = False
    exp: str | None = None
    actor: str = "system"
    via: str = "api"
    reason: str | None = None
    evidence: dict[str, Any] | None = None


@dataclass
class _Pending:
    actions: list[LabelAction]
    done: asyncio.Future[list[StoredLabel]]


def _check_storable(req: LabelRequest) -> None:
    """The audit fields are stored as given: text the database can hold and a response can encode."""
    try:
        check_text(req.actor, "actor")
        check_text(req.via, "via")
        if req.reason is not None:
            check_text(req.reason, "reason")
        if req.evidence is not None:
            check_json(req.evidence, "evidence")
    except Unstorable as exc:
        raise InvalidLabel(str(exc)) from None


class WriterClosed(RuntimeError):
    """The writer is shutting down and takes no more labels."""


class LabelWriter:
    def __init__(
        self,
        store: LabelStore,
        keyring: Keyring,
        src: str,
        *,
        on_commit: Callable[[CommitResult], None] | None = None,
        max_batch: int = 2000,
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.src = src
        self.on_commit = on_commit
        self.max_batch = max_batch
        self._pending: deque[_Pending] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._queued_at = 0.0  # when the first label queued since the committer last waited
        self._generation: int | None = None  # the key generation our labels are signed under (signing_state)

    async def start(self) -> None:
        if self._task is None:
            # The generation first, then the keyring: a rotation in between shows as a newer generation.
            self._generation = await current_generation(self.store.engine)
            self.keyring.reload_if_changed(force=True)
            self._task = asyncio.create_task(self._run(), name="label-writer")

    async def aclose(self) -> None:
        """Stop taking labels, commit everything already queued, then stop."""
        self._closing = True
        if self._task is not None:
            while self._pending or not self._idle.is_set():
                self._wake.set()
                await self._idle.wait()
                await asyncio.sleep(0)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def sign(self, requests: Sequence[LabelRequest]) -> list[LabelAction]:
        """Validate and sign; raises InvalidLabel before anything is queued, so nothing in a batch is unstorable."""
        key_info, key = self.keyring.active()
        cts = syntax.now()
        actions = []
        for req in requests:
            label = Label(self.src, req.uri, req.val, cts, req.cid, req.neg, req.exp)  # positional: hot path
            _check_storable(req)
            actions.append(
                LabelAction(
                    label=label.validate().signed(key),
                    key_id=key_info.id,
                    actor=req.actor,
                    via=req.via,
                    reason=req.reason,
                    evidence=req.evidence,
                )
            )
        return actions

    async def write(self, requests: Sequence[LabelRequest]) -> list[StoredLabel]:
        """Create labels; returns them with their seqs once committed.

        More than `max_batch` labels are committed in several transactions, so no single commit can flood a
        subscriber's buffer (which config keeps well above `max_batch`).
        """
        if self._closing or self._task is None:
            raise WriterClosed("the label writer is not running")
        if not requests:
            return []
        actions = self.sign(requests)
        loop = asyncio.get_running_loop()
        chunks = [
            _Pending(actions[i : i + self.max_batch], loop.create_future())
            for i in range(0, len(actions), self.max_batch)
        ]
        self._pending.extend(chunks)
        if not self._wake.is_set():
            self._queued_at = time.perf_counter()
            self._wake.set()
        if len(chunks) == 1:  # the common case; gather() would cost a wrapper future and a loop turn per call
            return await chunks[0].done
        results = await asyncio.gather(*(chunk.done for chunk in chunks))
        return [row for result in results for row in result]

    async def write_one(self, request: LabelRequest) -> StoredLabel:
        return (await self.write([request]))[0]

    async def _run(self) -> None:
        last_commit = 0.0  # seconds the previous commit took
        while True:
            limit = self.max_batch
            if not self._pending:
                self._idle.set()
                await self._wake.wait()
                self._wake.clear()
                if not self._pending:
                    continue
                limit = self._first_batch_limit(time.perf_counter() - self._queued_at, last_commit)
            self._idle.clear()
            batch = [self._pending.popleft()]
            count = len(batch[0].actions)
            while self._pending and count + len(self._pending[0].actions) <= limit:
                batch.append(self._pending.popleft())
                count += len(batch[-1].actions)
            started = time.perf_counter()
            await self._commit(batch)
            last_commit = time.perf_counter() - started

    def _first_batch_limit(self, queuing: float, last_commit: float) -> int:
        """How many of the labels queued while the committer was idle to commit first.

        Committing all of them is lockstep: every caller waits on that one commit, so the event loop idles while
        it runs, and the commit thread idles while the callers prepare their next labels. Committing half, then
        the other half at once, lets the first half's callers prepare their next labels during the second commit,
        and from then on the writer stays in that two-batch pipeline (measured with 256 one-label callers on
        SQLite, 2 vCPUs, alternating: 8.8–9.3k → 11.8–17.0k labels/s). A split costs one more commit's fixed part
        (BEGIN, fsync), so it is made only when queuing took longer than half the last commit (on a slow disk the
        fixed part dominates) and never below SPLIT_MIN labels (measured: 8 callers ~10 % slower pipelined, 16 even).
        """
        if queuing <= last_commit / 2:
            return self.max_batch
        queued = sum(len(pending.actions) for pending in self._pending)
        if queued < SPLIT_MIN:
            return self.max_batch
        return min(self.max_batch, queued // 2)

    async def _commit_current(self, batch: list[_Pending]) -> CommitResult:
        """`store.commit`, waiting out a signing hold, and re-signing with the key now active after a rotation."""
        while True:
            try:
                return await self.store.commit([a for p in batch for a in p.actions], self._generation)
            except SigningHeld:
                await asyncio.sleep(HOLD_POLL)
            except SigningRotated as exc:
                self.keyring.reload_if_changed(force=True)
                self._generation = exc.generation
                # Everything signed so far is in this batch or queued behind it (a caller signs and queues in one
                # turn of the event loop): all of it is re-signed, since none of it is committed yet.
                self._resign([*batch, *self._pending])

    def _resign(self, pending: list[_Pending]) -> None:
        info, key = self.keyring.active()
        count = 0
        for item in pending:
            count += sum(1 for a in item.actions if a.key_id != info.id)
            item.actions = [
                a if a.key_id == info.id else replace(a, label=a.label.signed(key), key_id=info.id)
                for a in item.actions
            ]
        log.info("the label key is now %s; re-signed %d labels not committed yet", info.id, count)

    async def _commit(self, batch: list[_Pending]) -> None:
        """Commit the batch; if it fails, each caller's labels are retried alone, so that whatever failed it (a
        database error no check foresaw) fails only its own caller. In an outage that is one failed attempt per
        caller, each answered as soon as its own attempt fails."""
        try:
            result = await self._commit_current(batch)
        except Exception as exc:
            if len(batch) > 1:
                log.warning("a label commit of %d requests failed (%s); committing them one by one", len(batch), exc)
                for pending in batch:
                    await self._commit([pending])
                return
            log.exception("label commit failed")
            if not batch[0].done.done():
                batch[0].done.set_exception(exc)
            return
        offset = 0
        for pending in batch:
            size = len(pending.actions)
            if not pending.done.done():
                pending.done.set_result(result.stored[offset : offset + size])
            offset += size
        if self.on_commit is not None:
            try:
                self.on_commit(result)
            except Exception:  # a bug there must not end the committer task: every later write would hang
                log.exception("a commit's listener failed")
