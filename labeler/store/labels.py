"""Label rows: sequencing commits, queryLabels lookups, stream backfill pages, signature refreshes.

Sequencing (design.md invariant 2): a commit takes the database's write lock first (PostgreSQL: a
transaction-level advisory lock; SQLite: BEGIN IMMEDIATE), reads the head, assigns seqs above it, and commits
while still holding the lock, so commit order = seq order across processes. New seqs are also never below the
current time in microseconds, so a database restored from an old backup still never reuses a seq that consumers
have seen (SPEC-STREAM: restart well above the old maximum). Both stay below 2^53.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sqlite3
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import asyncpg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from labeler.protocol import syntax
from labeler.protocol.label import Label
from labeler.store import signing_state
from labeler.store.engine import PG_LABEL_SEQUENCE_LOCK, StoreError, configure_sqlite_connection, is_sqlite
from labeler.store.notify import CHANNEL, new_token, payload
from labeler.store.schema import label_events, labels

T = TypeVar("T")

# The read connection maps the file rather than copying each page it reads into its own cache (SQLite caps this
# at its compile-time maximum, 2 GiB by default); address space only, the OS page cache holds the pages.
_READER_MMAP_BYTES: Final = 1 << 30
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


def rows_to_stored(rows: Any) -> list[StoredLabel]:
    """Rows of `_LABEL_COLUMNS` (as `query_rows` returns them) → StoredLabels, unpacked as tuples and built
    positionally (named Row access costs more). The hottest readers (a queryLabels page, a backfill page) skip
    this and encode rows directly."""
    out: list[StoredLabel] = []
    append = out.append
    for seq, src, uri, cid, val, neg, cts, exp, sig, key_id in rows:
        label = Label(src, uri, val, cts, cid or None, bool(neg), exp, sig if type(sig) is bytes else bytes(sig))
        append(StoredLabel(seq, label, key_id))
    return out


def stored_to_rows(stored: Sequence[StoredLabel]) -> list[tuple[Any, ...]]:
    """The inverse of `rows_to_stored`."""
    return [
        (s.seq, s.label.src, s.label.uri, s.label.cid or "", s.label.val, s.label.neg, s.label.cts, s.label.exp,
         s.label.sig, s.key_id)
        for s in stored
    ]  # fmt: skip


# Column order of the tuples `_commit_locked` builds for the two bulk inserts.
_LABEL_ROW: Final = ("seq", "src", "uri", "cid", "val", "neg", "cts", "exp", "sig", "key_id")
_EVENT_ROW: Final = (
    "seq", "created_at", "actor", "via", "reason", "src", "uri", "cid", "val", "neg", "cts", "exp", "evidence",
)  # fmt: skip
_CURRENT_KEY: Final = ("uri", "src", "cid", "val")  # labels_current_key
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


@functools.lru_cache(maxsize=256)
def _query_sql(sqlite: bool, everything: bool, exact: int, bounded: tuple[bool, ...], sources: int) -> str:
    """queryLabels as driver SQL for one shape of request. Parameters, numbered (`?n` on SQLite, `$n` on asyncpg) in
    this order: the cursor, the exact URIs, each prefix then its upper bound (only where `bounded`), the sources, the
    limit (see `LabelStore.query_rows`).

    Driver SQL, not a SQLAlchemy statement: queryLabels is the hot public read, and SQLAlchemy's statement, result
    and row layers cost several times what the database does for a 2-row lookup. Both databases compare URIs
    bytewise (schema.ByteText), so prefixes are plain range conditions and `_`, `%` and case are literal.

    URI conditions read `labels_current_key`, which leads with the URI; on SQLite they name it: `seq` is the rowid
    (migration 0005), and without ANALYZE statistics SQLite preferred walking the whole table in seq order, testing
    each row's URI, to reading the URI range and sorting the few matches (measured at 1M labels: ~170 ms instead of
    ~0.5 ms for one account's prefix). `*` with sources reads each source's rows above the cursor from
    `labels_src_seq`, already in seq order, at most `limit` each: bounded whether a source has every label or none
    (filtering the table in seq order instead walked every row above the cursor for a source with no labels)."""
    numbers = iter(range(1, 1 + 1 + exact + len(bounded) + sum(bounded) + sources + 1))

    def mark() -> str:
        return f"{'?' if sqlite else '$'}{next(numbers)}"

    columns = ", ".join(c.name for c in _LABEL_COLUMNS)
    cursor = mark()
    if everything and sources:
        source_marks = [mark() for _ in range(sources)]
        limit = mark()
        table = f"{labels.name} INDEXED BY labels_src_seq" if sqlite else labels.name
        arms = [
            f"SELECT {columns} FROM {table} WHERE src = {source} AND seq > {cursor} ORDER BY seq LIMIT {limit}"
            for source in source_marks
        ]
        if len(arms) == 1:
            return arms[0]
        merged = " UNION ALL ".join(f"SELECT * FROM ({arm}) AS s{i}" for i, arm in enumerate(arms))
        return f"{merged} ORDER BY seq LIMIT {limit}"
    where = [f"seq > {cursor}"]
    if not everything:
        conditions = []
        if exact:
            conditions.append(f"uri IN ({', '.join(mark() for _ in range(exact))})")
        for has_upper in bounded:
            conditions.append(f"(uri >= {mark()} AND uri < {mark()})" if has_upper else f"uri >= {mark()}")
        where.append(conditions[0] if len(conditions) == 1 else f"({' OR '.join(conditions)})")
    if sources:
        where.append(f"src IN ({', '.join(mark() for _ in range(sources))})")
    table = f"{labels.name} INDEXED BY labels_current_key" if sqlite and not everything else labels.name
    return f"SELECT {columns} FROM {table} WHERE {' AND '.join(where)} ORDER BY seq LIMIT {mark()}"


def query_statement(
    sqlite: bool, patterns: Sequence[str], sources: Sequence[str], cursor: int, limit: int
) -> tuple[str, list[Any], bool]:
    """queryLabels' driver SQL and parameters, and whether the limit bounds its cost (true without prefixes)."""
    everything = "*" in patterns
    exact: list[str] = []
    ranges: list[str] = []
    prefixes_bounded: list[bool] = []  # per prefix pattern: has an upper bound (`_query_sql`'s `bounded`)
    if not everything:
        for pattern in dict.fromkeys(patterns):
            if not pattern.endswith("*"):
                exact.append(pattern)
                continue
            upper = prefix_upper_bound(pattern[:-1])
            ranges.append(pattern[:-1])
            if upper is not None:
                ranges.append(upper)
            prefixes_bounded.append(upper is not None)
    source_list = list(dict.fromkeys(sources))
    sql = _query_sql(sqlite, everything, len(exact), tuple(prefixes_bounded), len(source_list))
    return sql, [cursor, *exact, *ranges, *source_list, limit], not prefixes_bounded


def _row_values(actions: Sequence[LabelAction], now: str) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """Per action, the values of its label row and of its audit row without their seq (`_LABEL_ROW[1:]`,
    `_EVENT_ROW[1:]`): every commit path writes exactly these."""
    for action in actions:
        label = action.label
        assert label.sig is not None, "the writer signs before committing"
        fields = (label.src, label.uri, label.cid or "", label.val, label.neg, label.cts, label.exp)
        evidence = None if action.evidence is None else json.dumps(action.evidence)
        yield (*fields, label.sig, action.key_id), (now, action.actor, action.via, action.reason, *fields, evidence)


def _sequence(
    previous: int, actions: Sequence[LabelAction]
) -> tuple[CommitResult, list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Seqs for `actions` above the head `previous` (and never below now in microseconds), and the rows of the
    label upsert and of the audit insert (`_LABEL_ROW`, `_EVENT_ROW`). Runs under the write lock."""
    if not actions:
        return CommitResult(previous_head=previous, stored=[]), [], []
    seq = max(previous + 1, time.time_ns() // 1000)
    rows: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    stored: list[StoredLabel] = []
    values = _row_values(actions, syntax.now())
    for this_seq, (action, (row, event_row)) in enumerate(zip(actions, values, strict=True), seq):
        rows.append((this_seq, *row))
        events.append((this_seq, *event_row))
        stored.append(StoredLabel(this_seq, action.label, action.key_id))
    return CommitResult(previous_head=previous, stored=stored), rows, events


def _sqlite_file(engine: AsyncEngine) -> str | None:
    """The file of a SQLite engine, or None for an in-memory or URI-style database."""
    url = engine.url
    path = url.database
    if not path or path == ":memory:" or path.startswith("file:") or url.query:
        return None
    return path


@functools.cache
def _sqlite_insert_sql(table: str, columns: tuple[str, ...], rows: int, upsert: bool) -> str:
    """One INSERT of `rows` rows whose seqs are `?1`, `?1 + 1`, …; then each row's `columns` (plain `?`, numbered
    on from 2: SQLite looks named and numbered parameters up in a list, so naming all of them costs quadratic time)."""
    marks = ", ".join("?" * len(columns))
    values = ", ".join(f"({f'?1 + {k}' if k else '?1'}, {marks})" for k in range(rows))
    sql = f"INSERT INTO {table} (seq, {', '.join(columns)}) VALUES {values}"
    if upsert:
        sql += f" ON CONFLICT ({', '.join(_CURRENT_KEY)}) DO UPDATE SET " + ", ".join(
            f"{name} = excluded.{name}" for name in _RELABEL_SETS
        )
    return sql


_SQLITE_LABEL_COLUMNS: Final = _LABEL_ROW[1:]
_SQLITE_EVENT_COLUMNS: Final = _EVENT_ROW[1:]


class _SqliteCommitter:
    """Label commits on SQLite through one dedicated connection, in one dedicated thread, one hop per commit.

    Through the engine, a commit was about a dozen hops between the event loop and aiosqlite's thread (checkout,
    BEGIN, each statement's cursor open/execute/close, COMMIT, the pool's reset), each a thread hand-off plus
    SQLAlchemy's layers on the event loop. Here the event loop flattens the rows' parameters and the commit thread
    runs the whole transaction (BEGIN IMMEDIATE, head, the inserts, COMMIT) in one call.

    The inserts are multi-row statements (chunks of power-of-two sizes, so a handful of statements stay in the
    connection's statement cache), not `executemany`: pysqlite releases the GIL around every step, and with the
    event loop busy signing, re-taking it after each row cost more than SQLite's own work (measured: one commit
    of ~150 labels took ~14 ms of wall time for ~4 ms of CPU). A multi-row statement is one step per chunk. Seqs
    are bound once per statement (`?1 + k`), so nothing per label runs in this thread but SQLite.

    Same pragmas as the engine's connections (WAL, synchronous=FULL: durable when `commit` returns); BEGIN
    IMMEDIATE takes SQLite's write lock, which every other writer (this process's pool, other processes) also
    takes, so commit order = seq order. SQLite processes a multi-row upsert row by row, so a batch holding the same
    (src, uri, cid, val) twice ends like the equivalent one-row statements (the later row wins).
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None  # opened, used and closed in the commit thread only
        self._max_rows = 1
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="label-commit")

    async def commit(self, actions: Sequence[LabelAction], generation: int | None) -> CommitResult:
        label_params: list[Any] = []
        event_params: list[Any] = []
        add_label, add_event = label_params.extend, event_params.extend
        for row, event_row in _row_values(actions, syntax.now()):
            add_label(row)
            add_event(event_row)
        loop = asyncio.get_running_loop()
        try:
            previous, first = await loop.run_in_executor(
                self._thread, self._commit, len(actions), label_params, event_params, generation
            )
        except sqlite3.Error as exc:
            raise StoreError(f"label commit failed: {type(exc).__name__}") from exc
        stored = [StoredLabel(seq, a.label, a.key_id) for seq, a in enumerate(actions, first)]
        return CommitResult(previous_head=previous, stored=stored)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            configure_sqlite_connection(conn)
            # A multi-row statement that can fail half-way keeps a statement journal (to undo just itself); in a
            # temp file that doubled the write I/O of a commit. In memory it is a few pages; the WAL stays the
            # durable log.
            conn.execute("PRAGMA temp_store=MEMORY")
            limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        except BaseException:
            conn.close()
            raise
        self._max_rows = 1
        while self._max_rows < 256 and (self._max_rows * 2) * len(_SQLITE_EVENT_COLUMNS) + 1 <= limit:
            self._max_rows *= 2
        self._conn = conn
        return conn

    def _commit(
        self, count: int, label_params: list[Any], event_params: list[Any], generation: int | None
    ) -> tuple[int, int]:
        """In the commit thread: (head before, first new seq)."""
        conn = self._conn or self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            previous = signing_state.check(conn.execute(signing_state.HEAD_AND_STATE_SQL).fetchone(), generation)
            first = max(previous + 1, time.time_ns() // 1000)
            label_width, event_width = len(_SQLITE_LABEL_COLUMNS), len(_SQLITE_EVENT_COLUMNS)
            done = 0
            while done < count:
                rows = self._max_rows
                while rows > count - done:
                    rows //= 2
                sql = _sqlite_insert_sql(labels.name, _SQLITE_LABEL_COLUMNS, rows, True)
                conn.execute(sql, [first + done, *label_params[done * label_width : (done + rows) * label_width]])
                sql = _sqlite_insert_sql(label_events.name, _SQLITE_EVENT_COLUMNS, rows, False)
                conn.execute(sql, [first + done, *event_params[done * event_width : (done + rows) * event_width]])
                done += rows
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        return previous, first

    def close(self) -> None:
        """Close the connection in its thread once any commit in progress is done; does not wait."""
        self._thread.submit(self._close_connection)
        self._thread.shutdown(wait=False)

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class _PerEngine(Generic[T]):
    """A side connection of the store's SQLite file, kept for the store's current engine: opened on first use,
    reopened if the engine was replaced, closed when the engine is disposed. None when the database is not a plain
    file (only the pool's own connection would see an in-memory database), or while `open` declines (it returns
    None; it is asked again on the next use)."""

    def __init__(self, open_: Callable[[str], T | None], close: Callable[[T], None]) -> None:
        self._open = open_
        self._close = close
        self._engine: AsyncEngine | None = None
        self._value: T | None = None

    def get(self, engine: AsyncEngine) -> T | None:
        if self._engine is engine:
            return self._value
        self.close()
        path = _sqlite_file(engine)
        if path is None:
            self._engine = engine
            return None
        value = self._open(path)
        if value is None:
            return None
        if not event.contains(engine.sync_engine, "engine_disposed", self._on_disposed):
            event.listen(engine.sync_engine, "engine_disposed", self._on_disposed)
        self._engine, self._value = engine, value
        return value

    def _on_disposed(self, _engine: Any) -> None:
        self.close()

    def close(self) -> None:
        value, self._value, self._engine = self._value, None, None
        if value is not None:
            self._close(value)


def _open_reader(path: str) -> sqlite3.Connection | None:
    """The read connection queryLabels and the stream use on the event loop, or None if SQLite is busy just now.

    mode=rw: never create a database file the engine does not have. Autocommit: each SELECT is its own short read
    transaction, so no snapshot outlives a request and checkpoints are never held back. busy_timeout 0 (timeout=0):
    never sleep on the event loop; a WAL reader is refused only in passing states (recovery after a crash, a
    checkpoint resetting the WAL), and then the request takes the pooled connection."""
    uri = f"file:{urllib.parse.quote(path)}?mode=rw"
    conn = sqlite3.connect(uri, uri=True, timeout=0, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA query_only=ON")
        conn.execute("PRAGMA cache_size=-65536")  # needs the schema, i.e. a read lock
        conn.execute(f"PRAGMA mmap_size={_READER_MMAP_BYTES}")
    except sqlite3.OperationalError:
        conn.close()
        return None  # busy just now: this request goes through the pool, the next one tries again
    except BaseException:
        conn.close()
        raise
    return conn


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
        # The SQLite file's own commit and read connections (see commit and query_rows).
        self._committer = _PerEngine(_SqliteCommitter, _SqliteCommitter.close)
        self._reader = _PerEngine(_open_reader, sqlite3.Connection.close)
        # PostgreSQL may have other processes committing: each commit NOTIFYs them (labeler.store.notify).
        self.notifies = not self._sqlite
        self.notify_token = new_token()

    async def head(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.coalesce(sa.func.max(labels.c.seq), 0)))).scalar_one())

    async def commit(self, actions: Sequence[LabelAction], generation: int | None = None) -> CommitResult:
        """Sequence and commit `actions` in one transaction; returns only after the commit is durable.

        Refused with `SigningHeld` while a key rotation holds signing, and with `SigningRotated` when `generation`
        (the key generation the labels were signed under; None: not checked) is not the current one
        (`labeler.store.signing_state`)."""
        if self._sqlite:
            committer = self._committer.get(self.engine)
            if committer is not None:
                return await committer.commit(actions, generation)
        try:
            if self._sqlite:  # a database that is not a plain file: through the engine's own connection
                async with self.engine.connect() as raw:
                    conn = await raw.execution_options(sqlite_begin="IMMEDIATE")
                    async with conn.begin():
                        return await self._commit_locked(conn, actions, generation)
            async with self.engine.connect() as conn:
                return await self._commit_pg(await conn.get_raw_connection(), actions, generation)
        except (SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"label commit failed: {type(exc).__name__}") from exc

    async def _commit_pg(self, raw: Any, actions: Sequence[LabelAction], generation: int | None) -> CommitResult:
        """The PostgreSQL commit on the pooled connection's asyncpg driver in a transaction of its own: the five
        statements through SQLAlchemy's statement, result and adapter layers cost the event loop more per commit
        than the rows did. The advisory lock is a statement of its own, before the head is read, so the head's
        snapshot is taken under the lock (READ COMMITTED: one snapshot per statement)."""
        driver = raw.driver_connection
        async with driver.transaction():
            await driver.execute("SELECT pg_advisory_xact_lock($1)", PG_LABEL_SEQUENCE_LOCK)
            previous = signing_state.check(await driver.fetchrow(signing_state.HEAD_AND_STATE_SQL), generation)
            result, rows, events = _sequence(int(previous), actions)
            if rows:
                upsert, insert_events = _bulk_insert_sql("numeric_dollar")
                await driver.executemany(upsert, rows)
                await driver.executemany(insert_events, events)
                # Queued by the transaction, delivered to listeners only once the commit is visible.
                await driver.execute("SELECT pg_notify($1, $2)", CHANNEL, payload(self.notify_token, rows[-1][0]))
        return result

    async def _commit_locked(
        self, conn: AsyncConnection, actions: Sequence[LabelAction], generation: int | None
    ) -> CommitResult:
        row = (await conn.exec_driver_sql(signing_state.HEAD_AND_STATE_SQL)).one()
        previous = signing_state.check(row, generation)
        result, rows, events = _sequence(previous, actions)
        if rows:
            upsert, insert_events = _bulk_insert_sql(conn.dialect.paramstyle)
            await conn.exec_driver_sql(upsert, rows)
            await conn.exec_driver_sql(insert_events, events)
        return result

    async def after_rows(self, seq: int, limit: int) -> list[Any]:
        """Current labels with seq > `seq`, in seq order, as plain rows (`query_rows`): the stream backfill, which
        encodes them directly."""
        return await self.query_rows(("*",), (), seq, limit)

    async def after(self, seq: int, limit: int) -> list[StoredLabel]:
        """`after_rows` as StoredLabels: the hub's catch-up."""
        return rows_to_stored(await self.after_rows(seq, limit))

    async def query(
        self, patterns: Sequence[str], sources: Sequence[str], cursor: int, limit: int
    ) -> list[StoredLabel]:
        """queryLabels: exact URIs or `prefix*` patterns (OR), optional sources, seq > cursor, seq order.

        Patterns are expected validated (a `*` only at the end); a bare `*` matches everything.
        """
        return rows_to_stored(await self.query_rows(patterns, sources, cursor, limit))

    async def query_pages(
        self, patterns: Sequence[str], sources: Sequence[str], *, after: int = 0, page: int = 1000
    ) -> AsyncIterator[list[StoredLabel]]:
        """Every label `query` matches past seq `after`, a page of at most `page` at a time, in seq order: for
        callers that need all of them (a page short of `page` is the last, so no empty query ends the walk)."""
        while True:
            rows = await self.query(patterns, sources, after, page)
            if rows:
                yield rows
            if len(rows) < page:
                return
            after = rows[-1].seq

    async def iter_query(
        self, patterns: Sequence[str], sources: Sequence[str], *, page: int = 1000
    ) -> AsyncIterator[StoredLabel]:
        """`query_pages`, one label at a time: a caller that stops early reads no further pages."""
        async for rows in self.query_pages(patterns, sources, page=page):
            for row in rows:
                yield row

    async def query_rows(self, patterns: Sequence[str], sources: Sequence[str], cursor: int, limit: int) -> list[Any]:
        """`query` as plain rows of `_LABEL_COLUMNS` (cid '' when absent), for callers that encode them directly.

        On SQLite, requests whose cost the limit bounds (`*`, with or without sources, or exact URIs) run synchronously
        on the store's own read connection: an index seek or a short range scan costs tens of microseconds, less
        than one hop to the driver's thread. Prefix patterns, which can scan far, keep to the pooled connection.
        """
        sql, params, limit_bounds_cost = query_statement(self._sqlite, patterns, sources, cursor, limit)
        return await self._fetch(sql, params, on_reader=limit_bounds_cost)

    async def _fetch(self, sql: str, params: Sequence[Any], *, on_reader: bool) -> list[Any]:
        """Rows of driver SQL: on SQLite's read connection, synchronously, when `on_reader` (the caller knows the
        cost is bounded by index seeks and the limit), else on a pooled connection."""
        if self._sqlite and on_reader:
            reader = self._reader.get(self.engine)
            if reader is not None:
                try:
                    return reader.execute(sql, params).fetchall()
                except sqlite3.OperationalError:
                    pass  # busy (only in rare WAL states) or similar: the pooled connection waits it out
        async with self.engine.connect() as conn:
            driver: Any = (await conn.get_raw_connection()).driver_connection
            if self._sqlite:
                return list(await driver.execute_fetchall(sql, params))
            return list(await driver.fetch(sql, *params))

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

    async def stale(self, src: str, active_key_id: str, after_seq: int, limit: int) -> list[StoredLabel]:
        """Labels of `src` signed by any key other than the active one, for the `keys resign` backlog."""
        query = (
            sa.select(*_LABEL_COLUMNS)
            .where(labels.c.src == src, labels.c.key_id != active_key_id, labels.c.seq > after_seq)
            .order_by(labels.c.seq)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return rows_to_stored(await conn.execute(query))

    async def events_for(self, uri: str, limit: int = 100) -> list[dict[str, Any]]:
        """The audit history of one subject, oldest first."""
        query = sa.select(label_events).where(label_events.c.uri == uri).order_by(label_events.c.id).limit(limit)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]
