"""GroupCommitter without a database: what is queued together commits together, up to `max_batch`; one failing
item fails only its caller; a caller that gives up does not take its item out of the batch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from labeler.reports.group_commit import GroupCommitter


class Recorder:
    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_on = fail_on
        self.release = asyncio.Event()
        self.release.set()

    async def commit(self, items: Sequence[int]) -> list[str]:
        await self.release.wait()
        if self.fail_on in items:
            raise ValueError(f"cannot store {self.fail_on}")
        self.batches.append(list(items))
        return [f"r{i}" for i in items]


async def test_concurrent_items_share_batches_of_at_most_max_batch() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.commit, max_batch=4, name="test")
    results = await asyncio.gather(*(committer.submit(i) for i in range(10)))
    assert results == [f"r{i}" for i in range(10)]
    assert recorder.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert await committer.submit(10) == "r10"  # a new flush starts after the last one ended
    assert recorder.batches[-1] == [10]


async def test_items_queued_during_a_commit_go_in_the_next_batch() -> None:
    recorder = Recorder()
    recorder.release.clear()
    committer = GroupCommitter(recorder.commit, max_batch=100, name="test")
    first = asyncio.ensure_future(committer.submit(0))
    await asyncio.sleep(0.01)  # the flush has taken [0] and waits in commit
    rest = [asyncio.ensure_future(committer.submit(i)) for i in (1, 2, 3)]
    recorder.release.set()
    assert await asyncio.gather(first, *rest) == ["r0", "r1", "r2", "r3"]
    assert recorder.batches == [[0], [1, 2, 3]]


async def test_a_failing_item_fails_only_its_caller() -> None:
    recorder = Recorder(fail_on=2)
    committer = GroupCommitter(recorder.commit, max_batch=100, name="test")
    results = await asyncio.gather(*(committer.submit(i) for i in range(4)), return_exceptions=True)
    assert results[:2] == ["r0", "r1"] and results[3] == "r3"
    assert isinstance(results[2], ValueError)
    assert recorder.batches == [[0], [1], [3]]  # the batch failed as a whole, then each item alone


async def test_a_cancelled_caller_still_has_its_item_committed() -> None:
    recorder = Recorder()
    recorder.release.clear()
    committer = GroupCommitter(recorder.commit, max_batch=100, name="test")
    gone = asyncio.ensure_future(committer.submit(0))
    stays = asyncio.ensure_future(committer.submit(1))
    await asyncio.sleep(0.01)
    gone.cancel()
    recorder.release.set()
    assert await stays == "r1"
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert recorder.batches == [[0, 1]]
