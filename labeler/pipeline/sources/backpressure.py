"""Backpressure from the job queue to the stream sources: ingest pauses while the queue is full.

When workers fall behind (too few, a PDS or the matcher down), a source that kept reading would grow
`image_jobs` until the disk is full. Instead, once the jobs not yet done reach `bound`, the source saves what it
has read (so its cursor covers every job written), stops reading, and resumes when the queue has drained to
`resume_at`. Nothing is skipped: the stream waits on the socket (the server's buffer, then TCP, hold it back),
and if the server drops a slow consumer the source reconnects from its saved cursor, as after any closed
connection, within the window of past events the server keeps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Final, Protocol

RESUME_FRACTION: Final = 0.9
CHECK_INTERVAL_S: Final = 1.0
POLL_S: Final = 1.0


class PendingJobs(Protocol):
    """The queue's count of jobs not done (labeler.pipeline.jobs.JobQueue.pending), counting at most `limit`."""

    async def pending(self, limit: int) -> int: ...


@dataclass
class Backpressure:
    queue: PendingJobs
    bound: int
    check_interval: float = CHECK_INTERVAL_S  # how often a reading source asks the queue
    poll: float = POLL_S  # how often a paused source asks
    resume_at: int = field(init=False)
    _next_check: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if self.bound < 1:
            raise ValueError("the bound must be at least 1 job")
        self.resume_at = int(self.bound * RESUME_FRACTION)

    def due(self) -> bool:
        """Time to ask the queue again (a clock read per event; the query at most once per `check_interval`)."""
        return time.monotonic() >= self._next_check

    async def full(self) -> int | None:
        """The pending count when it has reached the bound, else None."""
        self._next_check = time.monotonic() + self.check_interval
        count = await self.queue.pending(self.bound)
        return count if count >= self.bound else None

    async def drained(self) -> bool:
        return await self.queue.pending(self.bound) <= self.resume_at
