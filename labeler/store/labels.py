"""Label rows: sequencing commits, queryLabels lookups, stream backfill pages, signature refreshes.

Sequencing (design.md invariant 2): a commit takes the database's write lock first (PostgreSQL: a
transaction-level advisory lock; SQLite: BEGIN IMMEDIATE), reads the head, assigns seqs above it, and commits
while still holding the lock, so commit order = seq order across processes. New seqs are also never below the
current time in microseconds, so a database restored from an old backup still never reuses a seq that consumers
have seen (SPEC-STREAM: restart well above the old maximum). Both stay below 2^53.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from labeler.protocol import syntax
from labeler.protocol.label import Label
from labeler.store.engine import StoreError, is_sqlite
from labeler.store.notify import CHANNEL, new_token, payload
from labeler.store.schema import label_events, labels

_PG_SEQUENCE_LOCK: Final = 0x6C61626C  # "labl"
_LABEL_COLUMNS: Final = (
    labels.c.seq, labels.c.src, labels.c.uri, labels.c.cid, labels.c.val,
    labels.c.neg, labels.c.cts, labels.c.exp, labels.c.sig, labels.c.key_id,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class StoredLabel:
    """A committed label with its stream position and the id of the key whose signature it carries."""

    seq: int
    label: Label
    key_id: str


@dataclass(frozen=True, slots=True)
class LabelAction:
    """One label to commit, with the audit facts that go into the event log beside it."""

    label: Label
    key_id: str
    actor: str
    via: str
    reason: str | None = None
    evidence: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What a commit did: the head before it (for gap-free hand-over to the stream hub) and the rows."""

    previous_head: int
    stored: list[StoredLabel]


def _rows_to_stored(rows: Any) -> list[StoredLabel]:
    """Rows of `_LABEL_COLUMNS` → StoredLabels. Hot on every read path (a queryLabels page, a backfill page), so
    rows are unpacked as tuples and the dataclasses built positionally (named Row access costs more)."""
    out = []
    append = out.append
    for seq, src, uri, cid, val, neg, cts, exp, sig, key_id in rows:
        label = Label(src, uri, val, cts, cid or None, bool(neg), exp, sig if type(sig) is bytes else bytes(sig))
        append(StoredLabel(seq, label, key_id))
    return out


# Column order of the tuples `_commit_locked` builds for the two bulk inserts.
_LABEL_ROW: Final = ("seq", "src", "uri", "cid", "val", "neg", "cts", "exp", "sig", "key_id")
_EVENT_ROW: Final = (
    "seq", "created_at", "actor", "via", "reason", "src", "uri", "cid", "val", "neg", "cts", "exp", "evidence",
)  # fmt: skip
_CURRENT_KEY: Final = ("src", "uri", "cid", "val")  # labels_current_key
_RELABEL_SETS: Final = ("seq", "neg", "cts", "exp", "sig", "key_id")


@functools.cache
def _bulk_insert_sql(paramstyle: str) -> tuple[str, str]:
    """The label upsert and the audit insert as driver SQL, for `executemany` over plain tuples.

    A commit is the hot path of every label write: SQLAlchemy's per-row parameter processing cost more than the
    database's own work, and the driver's executemany binds tuples in C. Both databases take this exact SQL
    (`ON CONFLICT … DO UPDATE` with `excluded`); only the placeholders differ (qmark or numeric_dollar).
    """
    if paramstyle not in ("qmark", "numeric_dollar"):
        raise StoreError(f"unsupported database driver (paramstyle {paramstyle}); use aiosqlite or asyncpg")

    def insert(table: str, columns: Sequence[str]) -> str:
        marks = ("?" if paramstyle == "qmark" else f"${i}" for i in range(1, len(columns) + 1))
        return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(marks)})"

    upsert = (
        insert(labels.name, _LABEL_ROW)
        + f" ON CONFLICT ({', '.join(_CURRENT_KEY)}) DO UPDATE SET "
        + ", ".join(f"{name} = excluded.{name}" for name in _RELABEL_SETS)
    )
    return upsert, insert(label_events.name, _EVENT_ROW)


# Read statements built once; their limits and cursors are bound parameters, so SQLAlchemy's compiled cache is
# hit and nothing is rebuilt per request.
_AFTER: Final = (
    sa.select(*_LABEL_COLUMNS)
    .where(labels.c.seq > sa.bindparam("after"))
    .order_by(labels.c.seq)
    .limit(sa.bindparam("limit", type_=sa.Integer))
)
_QUERY_ALL: Final = _AFTER
_QUERY_URIS: Final = (
    sa.select(*_LABEL_COLUMNS)
    .where(labels.c.seq > sa.bindparam("after"), labels.c.uri.in_(sa.bindparam("uris", expanding=True)))
    .order_by(labels.c.seq)
    .limit(sa.bindparam("limit", type_=sa.Integer))
)


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (code-point order), or None."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:  # skip surrogates: not encodable as UTF-8
                nxt = 0xE000
            return "".join(chars) + chr(nxt)
    return None


class LabelStore:
    """Queries over the `labels` and `label_events` tables of one engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sqlite = is_sqlite(engine)
        # PostgreSQL may have other processes committing: each commit NOTIFYs them (labeler.store.notify).
        self.notifies = not self._sqlite
        self.notify_token = new_token()

    async def head(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.coalesce(sa.func.max(labels.c.seq), 0)))).scalar_one())

    async def commit(self, actions: Sequence[LabelAction]) -> CommitResult:
        """Sequence and commit `actions` in one transaction; returns only after the commit is durable."""
        try:
            if self._sqlite:
                async with self.engine.connect() as raw:
                    conn = await raw.execution_options(sqlite_begin="IMMEDIATE")
                    async with conn.begin():
                        return await self._commit_locked(conn, actions)
            async with self.engine.begin() as conn:
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_SEQUENCE_LOCK)))
                result = await self._commit_locked(conn, actions)
                if result.stored:
                    # Queued by the transaction, delivered to listeners only once the commit is visible.
                    note = payload(self.notify_token, result.stored[-1].seq)
                    await conn.execute(sa.select(sa.func.pg_notify(CHANNEL, note)))
                return result
        except SQLAlchemyError as exc:
            raise StoreError(f"label commit failed: {type(exc).__name__}") from exc

    async def _commit_locked(self, conn: AsyncConnection, actions: Sequence[LabelAction]) -> CommitResult:
        previous = int((await conn.execute(sa.select(sa.func.coalesce(sa.func.max(labels.c.seq), 0)))).scalar_one())
        if not actions:
            return CommitResult(previous_head=previous, stored=[])
        seq = max(previous + 1, time.time_ns() // 1000)
        now = syntax.now()
        rows: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        stored: list[StoredLabel] = []
        for this_seq, action in enumerate(actions, seq):
            label = action.label
            assert label.sig is not None, "the writer signs before committing"
            fields = (label.src, label.uri, label.cid or "", label.val, label.neg, label.cts, label.exp)
            rows.append((this_seq, *fields, label.sig, action.key_id))
            evidence = None if action.evidence is None else json.dumps(action.evidence)
            events.append((this_seq, now, action.actor, action.via, action.reason, *fields, evidence))
            stored.append(StoredLabel(this_seq, label, action.key_id))
        upsert, insert_events = _bulk_insert_sql(conn.dialect.paramstyle)
        await conn.exec_driver_sql(upsert, rows)
        await conn.exec_driver_sql(insert_events, events)
        return CommitResult(previous_head=previous, stored=stored)

    async def after(self, seq: int, limit: int) -> list[StoredLabel]:
        """Current labels with seq > `seq`, in seq order: stream backfill and live catch-up."""
        async with self.engine.connect() as conn:
            return _rows_to_stored(await conn.execute(_AFTER, {"after": seq, "limit": limit}))

    async def query(
        self, patterns: Sequence[str], sources: Sequence[str], cursor: int, limit: int
    ) -> list[StoredLabel]:
        """queryLabels: exact URIs or `prefix*` patterns (OR), optional sources, seq > cursor, seq order.

        Patterns are expected validated (a `*` only at the end); a bare `*` matches everything.
        """
        prefixes = [p[:-1] for p in patterns if p.endswith("*")]
        if not sources and "*" in patterns:
            statement, params = _QUERY_ALL, {"after": cursor, "limit": limit}
        elif not sources and not prefixes:
            statement, params = _QUERY_URIS, {"after": cursor, "limit": limit, "uris": list(patterns)}
        else:
            statement, params = self._query_statement(patterns, prefixes, sources, cursor, limit), {}
        async with self.engine.connect() as conn:
            return _rows_to_stored(await conn.execute(statement, params))

    @staticmethod
    def _query_statement(
        patterns: Sequence[str], prefixes: Sequence[str], sources: Sequence[str], cursor: int, limit: int
    ) -> sa.Select[Any]:
        query = sa.select(*_LABEL_COLUMNS).where(labels.c.seq > cursor)
        if "*" not in patterns:
            conditions: list[Any] = []
            exact = [p for p in patterns if not p.endswith("*")]
            if exact:
                conditions.append(labels.c.uri.in_(exact))
            for prefix in prefixes:
                upper = prefix_upper_bound(prefix)
                lower = labels.c.uri >= prefix
                conditions.append(lower if upper is None else sa.and_(lower, labels.c.uri < upper))
            query = query.where(sa.or_(*conditions))
        if sources:
            query = query.where(labels.c.src.in_(list(sources)))
        return query.order_by(labels.c.seq).limit(limit)

    async def replace_signatures(self, refreshed: Sequence[StoredLabel], stale_key_ids: dict[int, str]) -> None:
        """Persist re-signed labels (seq and cts unchanged), only where the row still has the stale signature."""
        if not refreshed:
            return
        stmt = (
            labels.update()
            .where(labels.c.seq == sa.bindparam("b_seq"), labels.c.key_id == sa.bindparam("b_old"))
            .values(sig=sa.bindparam("b_sig"), key_id=sa.bindparam("b_key"))
        )
        params = [
            {"b_seq": s.seq, "b_old": stale_key_ids[s.seq], "b_sig": s.label.sig, "b_key": s.key_id} for s in refreshed
        ]
        async with self.engine.begin() as conn:
            await conn.execute(stmt, params)

    async def stale(self, active_key_id: str, after_seq: int, limit: int) -> list[StoredLabel]:
        """Labels signed by any key other than the active one, for the `keys resign` backlog."""
        query = (
            sa.select(*_LABEL_COLUMNS)
            .where(labels.c.key_id != active_key_id, labels.c.seq > after_seq)
            .order_by(labels.c.seq)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return _rows_to_stored(await conn.execute(query))

    async def events_for(self, uri: str, limit: int = 100) -> list[dict[str, Any]]:
        """The audit history of one subject, oldest first."""
        query = sa.select(label_events).where(label_events.c.uri == uri).order_by(label_events.c.id).limit(limit)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]
