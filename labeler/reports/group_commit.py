"""Group commit for small writes: many callers' items in one transaction, each caller answered after it commits.

Under concurrency, a transaction per item makes every caller wait for every other caller's commit (SQLite: one
writer and an fsync per commit). Here a caller queues its item and awaits its future; a flush task, started by
the first item that finds none running and ending when the queue is empty, hands everything queued (up to
`max_batch` items) to `commit`, which writes them in one transaction and returns one result per item in order.
A caller is answered only after the transaction holding its item committed, so nothing acknowledged can be lost.

If a batch of several items fails, each item is retried alone, so one bad item fails only its own caller. No
background task outlives the work, so there is nothing to start or stop.

Labels have their own committer (`labeler.labels.writer.LabelWriter`), tuned for the label path: it keeps signing
and committing overlapped under load, which moderator actions never need. It retries a failed batch the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class GroupCommitter(Generic[T, R]):
    def __init__(self, commit: Callable[[Sequence[T]], Awaitable[Sequence[R]]], *, max_batch: int, name: str) -> None:
        self._commit = commit
        self.max_batch = max_batch
        self.name = name
        self._queue: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Queue `item`; returns its result once the transaction holding it has committed."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name=self.name)
        return await done

    async def _flush(self) -> None:
        try:
            while self._queue:
                count = min(len(self._queue), self.max_batch)
                batch = [self._queue.popleft() for _ in range(count)]
                await self._commit_batch(batch)
        except BaseException:  # cancelled (shutdown): nothing will commit what is still queued
            while self._queue:
                self._queue.popleft()[1].cancel()
            raise
        finally:
            self._flusher = None  # no await between the empty check and here: a new item starts a new flush

    async def _commit_batch(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._commit([item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0][1], exc)
                return
            log.warning("%s: a batch of %d failed (%s); committing its items one by one", self.name, len(batch), exc)
            for one in batch:
                await self._commit_batch([one])
            return
        except BaseException:  # cancelled (shutdown): nobody is left to commit what waits here
            for _, done in batch:
                done.cancel()
            raise
        for (_, done), result in zip(batch, results, strict=True):
            if not done.done():  # its caller may have been cancelled; the item is committed all the same
                done.set_result(result)


def _fail(done: asyncio.Future[R], exc: Exception) -> None:
    if not done.done():
        done.set_exception(exc)
