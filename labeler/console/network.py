"""What the review queue reads from the network for context (posts' text, authors' handles): every lookup at once,
a few at a time, and all within a few seconds, so a slow PDS or directory costs the page that long and no more."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, TypeVar

WITHIN: Final = 3.0
_AT_ONCE: Final = 8

K = TypeVar("K")
T = TypeVar("T")


async def gather_within(keys: Iterable[K], look_up: Callable[[K], Awaitable[T]], *, late: T) -> dict[K, T]:
    """key → `look_up(key)`, run concurrently (at most 8 at once); `late` for those not done within WITHIN
    seconds, which are cancelled."""
    gate = asyncio.Semaphore(_AT_ONCE)

    async def one(key: K) -> T:
        async with gate:
            return await look_up(key)

    tasks = {key: asyncio.ensure_future(one(key)) for key in dict.fromkeys(keys)}
    if tasks:
        await asyncio.wait(tasks.values(), timeout=WITHIN)
    found: dict[K, T] = {}
    for key, task in tasks.items():
        if task.done():
            found[key] = task.result()
        else:
            task.cancel()
            found[key] = late
    return found
