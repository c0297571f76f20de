"""The outbox: every action is a row before anything is attempted, so none is lost and none is done twice.

- **Queuing is idempotent.** Each row has a `dedupe_key` naming its intent (this decision's takedown of this
  record); queuing it again — a job that runs twice after a crash, two moderators confirming at once — adds
  nothing and returns the existing row.
- **Claims are exclusive** (as `JobQueue.claim`): PostgreSQL picks rows with `FOR UPDATE SKIP LOCKED`, SQLite
  runs the same `UPDATE … RETURNING` under its write lock. A claimed row is `running` under a lease; the row of a
  process that died comes back when the lease ends. Every finishing write is fenced by (state, attempts), so an
  attempt that lost its lease changes nothing.
- **A reversal waits for what it reverses**: it is not claimed while the original is still pending or running.
  Reversing a decision cancels what was never attempted, and queues a reversal of everything that was.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from labeler.pipeline.actions.model import Action, ActionSpec
from labeler.protocol import syntax
from labeler.store.actions_schema import actions
from labeler.store.engine import is_sqlite, write_transaction

_MAX_DETAIL: Final = 2000
_original = actions.alias("original")


def _action(row: Any) -> Action:
    return Action(
        id=row.id, kind=row.kind, op=row.op, decision=row.decision, job_id=row.job_id, rule=row.rule,
        subject_uri=row.subject_uri, subject_cid=row.subject_cid, params=dict(row.params),
        evidence=row.evidence, notify=bool(row.notify), state=row.state, attempts=row.attempts,
        next_attempt_at=row.next_attempt_at, outcome=row.outcome, detail=row.detail, result=row.result,
        reverses=row.reverses, reversed_by=row.reversed_by, actor=row.actor, dedupe_key=row.dedupe_key,
        created_at=row.created_at, updated_at=row.updated_at, finished_at=row.finished_at,
    )  # fmt: skip


class Outbox:
    """Queries over `actions`. Each method is one short transaction; database errors leave as `StoreError`."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self._sqlite = is_sqlite(engine)
        self._insert = sqlite.insert if self._sqlite else postgresql.insert
        self._clock = clock

    def _write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return write_transaction(self.engine, "action outbox write")

    async def submit(
        self,
        specs: Sequence[ActionSpec],
        *,
        claim: Callable[[ActionSpec], bool] | None = None,
        lease_seconds: float = 0.0,
    ) -> tuple[list[Action], set[int]]:
        """Queue actions (due now). Returns one row per spec (the existing row where the intent was queued
        before), and the ids of new rows for which `claim(spec)` said yes: those are claimed for the caller."""
        if not specs:
            return [], set()
        async with self._write() as conn:
            claimed = await self._insert_specs(conn, specs, claim, lease_seconds)
            keys = [s.dedupe_key for s in specs]
            found = await conn.execute(actions.select().where(actions.c.dedupe_key.in_(keys)))
            rows = {r.dedupe_key: _action(r) for r in found}
        return [rows[key] for key in keys], claimed

    async def _insert_specs(
        self,
        conn: AsyncConnection,
        specs: Sequence[ActionSpec],
        claim: Callable[[ActionSpec], bool] | None = None,
        lease_seconds: float = 0,
    ) -> set[int]:
        now, stamp = self._clock(), syntax.now()
        rows = []
        for s in {s.dedupe_key: s for s in specs}.values():
            mine = claim is not None and claim(s)
            rows.append({
                "kind": s.kind, "op": s.op, "decision": s.decision, "job_id": s.job_id, "rule": s.rule,
                "subject_uri": s.subject_uri, "subject_cid": s.subject_cid, "params": s.params,
                "evidence": s.evidence, "notify": s.notify, "state": "running" if mine else "pending",
                "attempts": 1 if mine else 0, "lease_expires_at": now + lease_seconds if mine else None,
                "next_attempt_at": now, "reverses": s.reverses, "actor": s.actor, "dedupe_key": s.dedupe_key,
                "created_at": stamp, "updated_at": stamp,
            })  # fmt: skip
        stmt = self._insert(actions).values(rows).on_conflict_do_nothing(index_elements=["dedupe_key"])
        inserted = await conn.execute(stmt.returning(actions.c.id, actions.c.state))
        return {int(row_id) for row_id, state in inserted if state == "running"}

    async def claim(self, *, limit: int, lease_seconds: float, ids: Sequence[int] | None = None) -> list[Action]:
        """Take up to `limit` due rows (or only those of `ids`) for one lease; each claim counts an attempt."""
        now = self._clock()
        due = sa.or_(
            sa.and_(actions.c.state == "pending", actions.c.next_attempt_at <= now),
            sa.and_(actions.c.state == "running", actions.c.lease_expires_at <= now),
        )
        original_busy = sa.exists().where(
            _original.c.id == actions.c.reverses, _original.c.state.in_(("pending", "running"))
        )
        pick = sa.select(actions.c.id).where(due, sa.or_(actions.c.reverses.is_(None), ~original_busy))
        if ids is not None:
            pick = pick.where(actions.c.id.in_(list(ids)))
        pick = pick.order_by(actions.c.next_attempt_at, actions.c.id).limit(limit)
        if not self._sqlite:
            pick = pick.with_for_update(skip_locked=True, of=actions)
        stmt = (
            actions.update()
            .where(actions.c.id.in_(pick.scalar_subquery()))
            .values(
                state="running",
                lease_expires_at=now + lease_seconds,
                attempts=actions.c.attempts + 1,
                updated_at=syntax.now(),
            )
            .returning(*actions.c)
        )
        async with self._write() as conn:
            claimed = [_action(r) for r in await conn.execute(stmt)]
        return sorted(claimed, key=lambda a: a.id)

    async def finish(
        self,
        action: Action,
        state: str,
        code: str,
        *,
        detail: str | None = None,
        result: dict[str, Any] | None = None,
        retry_in: float | None = None,
        then: Sequence[ActionSpec] = (),
    ) -> bool:
        """Record an attempt's outcome (terminal `state`, or back to pending in `retry_in` seconds) and queue
        `then` in the same transaction; False if the claim was lost (another attempt took over)."""
        stamp = syntax.now()
        values: dict[str, Any] = {
            "state": "pending" if retry_in is not None else state,
            "outcome": code,
            "detail": detail[:_MAX_DETAIL] if detail else None,
            "lease_expires_at": None,
            "updated_at": stamp,
        }
        if retry_in is not None:
            values["next_attempt_at"] = self._clock() + retry_in
        else:
            values.update(result=result, finished_at=stamp)
        stmt = (
            actions.update()
            .where(actions.c.id == action.id, actions.c.state == "running", actions.c.attempts == action.attempts)
            .values(**values)
        )
        async with self._write() as conn:
            if (await conn.execute(stmt)).rowcount != 1:
                return False
            if then:
                await self._insert_specs(conn, then)
        return True

    async def reverse(
        self, decision: str, make: Callable[[Action], ActionSpec], *, kinds: Sequence[str], reason: str
    ) -> list[Action]:
        """Undo what `decision` did: actions of `kinds` never attempted are cancelled; for each one attempted
        (or in flight) a reversal `make(original)` is queued and linked. Returns the reversals, new or earlier."""
        stamp = syntax.now()
        mine = sa.and_(actions.c.decision == decision, actions.c.op == "apply", actions.c.kind.in_(list(kinds)))
        async with self._write() as conn:
            # Waiting for a first or a further attempt: stop. One never attempted did nothing; one attempted
            # before may have taken effect (a timeout is no proof of failure), so it is reversed below.
            stop = actions.update().where(mine, actions.c.state == "pending").values(
                state="cancelled", outcome="reversed", detail=reason[:_MAX_DETAIL], updated_at=stamp, finished_at=stamp
            )  # fmt: skip
            await conn.execute(stop)
            query = actions.select().where(mine, actions.c.attempts > 0).order_by(actions.c.id)
            originals = [_action(r) for r in await conn.execute(query)]
            if not originals:
                return []
            specs = [make(original) for original in originals]
            await self._insert_specs(conn, specs)
            keys = [s.dedupe_key for s in specs]
            reversals = [_action(r) for r in await conn.execute(actions.select().where(actions.c.dedupe_key.in_(keys)))]
            by_original = {r.reverses: r.id for r in reversals}
            for original in originals:
                if original.reversed_by is None:
                    link = actions.update().where(actions.c.id == original.id)
                    await conn.execute(link.values(reversed_by=by_original[original.id], updated_at=stamp))
        return sorted(reversals, key=lambda a: a.id)

    async def requeue(self, ids: Sequence[int]) -> list[Action]:
        """Give failed actions another round of attempts (after the operator fixed what refused them)."""
        stmt = (
            actions.update()
            .where(actions.c.id.in_(list(ids)), actions.c.state == "failed")
            .values(
                state="pending", attempts=0, next_attempt_at=self._clock(), finished_at=None, updated_at=syntax.now()
            )
            .returning(*actions.c)
        )
        async with self._write() as conn:
            return sorted((_action(r) for r in await conn.execute(stmt)), key=lambda a: a.id)

    async def get(self, action_id: int) -> Action | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(actions.select().where(actions.c.id == action_id))).first()
        return _action(row) if row is not None else None

    async def many(self, ids: Sequence[int]) -> list[Action]:
        """The rows of `ids`, in that order."""
        async with self.engine.connect() as conn:
            found = {r.id: _action(r) for r in await conn.execute(actions.select().where(actions.c.id.in_(list(ids))))}
        return [found[i] for i in ids if i in found]

    async def list(
        self,
        *,
        state: str | None = None,
        kind: str | None = None,
        subject_uri: str | None = None,
        decision: str | None = None,
        job_id: int | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[Action]:
        """Rows in id order after `after` (a cursor), filtered."""
        query = actions.select().where(actions.c.id > after)
        for column, value in (
            (actions.c.state, state), (actions.c.kind, kind), (actions.c.subject_uri, subject_uri),
            (actions.c.decision, decision), (actions.c.job_id, job_id),
        ):  # fmt: skip
            if value is not None:
                query = query.where(column == value)
        async with self.engine.connect() as conn:
            return [_action(r) for r in await conn.execute(query.order_by(actions.c.id).limit(limit))]

    async def busy(self) -> int:
        """Actions due now or being attempted (not those waiting out a backoff)."""
        due = sa.or_(
            sa.and_(actions.c.state == "pending", actions.c.next_attempt_at <= self._clock()),
            actions.c.state == "running",
        )
        async with self.engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).where(due))).scalar_one())

    async def counts(self) -> dict[tuple[str, str], int]:
        """Rows per (kind, state)."""
        query = sa.select(actions.c.kind, actions.c.state, sa.func.count()).group_by(actions.c.kind, actions.c.state)
        async with self.engine.connect() as conn:
            return {(kind, state): int(n) for kind, state, n in await conn.execute(query)}
