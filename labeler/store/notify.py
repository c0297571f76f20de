"""Cross-process commit notifications on PostgreSQL (design.md Storage: LISTEN/NOTIFY with a poll fallback).

Several labeler processes share one database, and each one's subscribers must get every label any of them commits.
A label commit sends `NOTIFY labeler_labels, '<token> <last seq>'` inside its transaction, so PostgreSQL delivers
it only once the commit is visible. Every process LISTENs on one dedicated connection (a pooled one would be handed
to queries and drop the LISTEN) and nudges its stream hub, which then catches up from the database. The token names
the committing store: a process ignores its own notifications, because its writer already hands those commits to
the hub directly, and a catch-up started ahead of that hand-over would read only current state and drop the events
of labels a later commit superseded. A lost connection is re-established with backoff; meanwhile the hub's poll
keeps the stream going, and every (re)connect nudges once to cover what was missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

CHANNEL: Final = "labeler_labels"
APPLICATION_NAME: Final = "labeler-listen"  # how the LISTEN connection shows in pg_stat_activity
HEALTH_INTERVAL: Final = 10.0
HEALTH_TIMEOUT: Final = 5.0
MIN_BACKOFF: Final = 0.5
MAX_BACKOFF: Final = 30.0
# SQLAlchemy's asyncpg dialect accepts these in the URL query; asyncpg.connect does not.
_DIALECT_ONLY: Final = ("prepared_statement_cache_size", "prepared_statement_name_func", "async_creator_fn")


def new_token() -> str:
    """A random id for one store instance, carried in its notifications so it can recognise its own."""
    return uuid.uuid4().hex[:16]


def payload(token: str, seq: int) -> str:
    return f"{token} {seq}"


def parse_payload(text: str) -> tuple[str, int] | None:
    token, _, seq = text.partition(" ")
    try:
        return token, int(seq)
    except ValueError:
        return None


class CommitListener:
    """LISTENs for other processes' label commits and calls `on_commit(last_seq)` (or `None`: "anything may have
    been missed, look") for each. Never raises; runs until `aclose()`."""

    def __init__(
        self,
        engine: AsyncEngine,
        token: str,
        on_commit: Callable[[int | None], None],
        *,
        health_interval: float = HEALTH_INTERVAL,
    ) -> None:
        self.engine = engine
        self.token = token
        self.on_commit = on_commit
        self.health_interval = health_interval
        self.connected = asyncio.Event()
        self.connects = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="stream-hub-listen")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _connect(self) -> Any:
        import asyncpg

        cargs, cparams = self.engine.dialect.create_connect_args(self.engine.url)
        params = {k: v for k, v in cparams.items() if k not in _DIALECT_ONLY}
        params["server_settings"] = {**params.get("server_settings", {}), "application_name": APPLICATION_NAME}
        return await asyncpg.connect(*cargs, timeout=HEALTH_TIMEOUT, **params)

    async def _run(self) -> None:
        backoff = MIN_BACKOFF
        while True:
            connecting = asyncio.ensure_future(self._connect())
            try:
                conn = await asyncio.shield(connecting)
            except asyncio.CancelledError:
                # Stopped mid-connect: let the (time-bounded) connect finish and close what it made, rather than
                # leave a half-open connection for the garbage collector.
                with contextlib.suppress(Exception):
                    (await connecting).terminate()
                raise
            except Exception as exc:
                log.warning("label LISTEN connection failed (%s: %s); retrying in %.1fs", type(exc).__name__, exc,
                            backoff)  # fmt: skip
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = MIN_BACKOFF
            try:
                await self._listen(conn)
            except Exception as exc:
                log.warning("label LISTEN connection lost (%s: %s); reconnecting", type(exc).__name__, exc)
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    conn.terminate()
            await asyncio.sleep(MIN_BACKOFF)

    async def _listen(self, conn: Any) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(CHANNEL, self._on_notification)
        self.connects += 1
        self.connected.set()
        self.on_commit(None)  # commits made while we were not listening
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.health_interval):
                    await lost.wait()
            if not lost.is_set():
                # A half-open connection (the server gone without a FIN) would never report itself.
                async with asyncio.timeout(HEALTH_TIMEOUT):
                    await conn.fetchval("SELECT 1")

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, text: str) -> None:
        parsed = parse_payload(text)
        if parsed is None:
            self.on_commit(None)
        elif parsed[0] != self.token:
            self.on_commit(parsed[1])
