"""The threads that share out a live commit's socket writes (`StreamHub`'s fan-out).

A live commit costs each subscriber one socket write, and on a 2 vCPU VM a small loopback TCP write takes ~6–10 µs
of kernel time, so 1,000 subscribers kept the event loop's thread busy for ~10 ms per commit. The kernel part runs
with the GIL released, so the fan-out splits the sockets between the event loop's thread and helper threads.

The event loop's thread takes a share itself and waits for the helpers before it returns, so while they run
nothing on the loop touches a connection: no transport writes to a socket or closes it, and no file descriptor is
reused under a helper. The helpers only write: which sockets may take a write is decided on the loop beforehand
(`StreamHub._fan_out`), because every Python step between two writes needs the GIL, and checks made in the
helpers kept the threads queuing for it (1,000 subscribers, 2 vCPUs, alternating: 7.5 ms per fan-out with the
checks in the threads, 6.1 with them first on the loop, 5.3 writing alone).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import partial
from typing import Final, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Below this many items a share is too small to be worth a thread hand-off.
PARALLEL_MIN: Final = 64


def default_threads() -> int:
    """One per core (`LABELER_FAN_OUT_THREADS=0`), at most 4 until measured on more than 2 cores: each thread
    also needs the GIL between its writes."""
    return max(1, min(4, os.cpu_count() or 1))


class FanOutThreads:
    """Runs `fn` over items in consecutive shares, one per thread: the calling thread and `threads - 1` helpers."""

    def __init__(self, threads: int) -> None:
        self.helpers = threads - 1
        self._pool = (
            ThreadPoolExecutor(max_workers=self.helpers, thread_name_prefix="fan-out") if self.helpers else None
        )

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """`[fn(item) for item in items]`, in order; returns once every share is done."""
        pool = self._pool
        if pool is None or len(items) < PARALLEL_MIN:
            return list(map(fn, items))
        size = -(-len(items) // (self.helpers + 1))
        futures: list[Future[list[R]]] = [
            pool.submit(_run_share, fn, items[start : start + size]) for start in range(size, len(items), size)
        ]
        try:
            results = list(map(fn, items[:size]))
        finally:
            wait(futures)  # even if this share failed: the loop must not run while a helper writes
        for future in futures:
            results += future.result()
        return results

    def write(self, wire: bytes, fds: Sequence[int]) -> list[int]:
        """`wire` written once to each of `fds` (non-blocking sockets): per fd the bytes it took (perhaps only
        some), or -1 if it took none (full, or failing: its owner finds out which)."""
        return self.map(partial(_write, wire), fds)

    def close(self) -> None:
        """Stop the helpers; later calls run on the calling thread alone."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


def _write(wire: bytes, fd: int) -> int:
    try:
        return os.write(fd, wire)
    except OSError:
        return -1


def _run_share(fn: Callable[[T], R], share: Sequence[T]) -> list[R]:
    return list(map(fn, share))
