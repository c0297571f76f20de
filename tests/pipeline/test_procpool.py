"""procpool: jobs in child processes under a wall-time and a memory limit, one bad job never failing another.

Jobs here are standard-library functions (time.sleep, bytearray, os.abort …) so the children need nothing of ours.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import operator
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from labeler.pipeline.procpool.pool import (
    ChildDied,
    JobOutOfMemory,
    JobTimedOut,
    Limits,
    PoolBusy,
    PoolClosed,
    ProcessPool,
)

from .processes import child_pids, wait_for_exit

LIMITS = Limits(timeout=30.0, memory_bytes=768 << 20)


@pytest.fixture
async def pool() -> AsyncIterator[ProcessPool]:
    pool = ProcessPool(processes=2, limits=LIMITS, name="test pool")
    await pool.start()
    try:
        yield pool
    finally:
        await pool.aclose()


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded) for `condition`: the pool's state, never a length of time, is what tests here wait on."""
    for _ in range(600):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def until_size(pool: ProcessPool, size: int) -> None:
    """Wait (bounded) for replacements to finish starting."""
    await until(lambda: len(pool.pids) == size and pool.idle == size, f"{size} idle processes (have {pool.pids})")


def gate(path: Path) -> functools.partial[bytes]:
    """A job that holds its child until the test opens the gate: it reads a FIFO, which blocks until written."""
    os.mkfifo(path)
    return functools.partial(Path.read_bytes, path)


async def open_gate(path: Path) -> None:
    """Let the job reading `path` finish: write to the FIFO once the job has it open."""
    for _ in range(600):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: nobody reads it yet
                raise
            await asyncio.sleep(0.05)
            continue
        try:
            os.write(fd, b"go")
        finally:
            os.close(fd)
        return
    raise AssertionError(f"no job is reading {path}")


async def test_children_start_with_the_pool_and_answer_jobs(pool: ProcessPool) -> None:
    assert len(pool.pids) == 2
    assert sorted(child_pids(os.getpid())) == pool.pids  # real processes, ours, before any job
    assert await pool.run(functools.partial(operator.add, 2, 3)) == 5
    assert await pool.run(os.getpid) in pool.pids
    with pytest.raises(ZeroDivisionError):
        await pool.run(functools.partial(operator.truediv, 1, 0))
    # A job's own exception leaves its child in service.
    assert await pool.run(os.getpid) in pool.pids and pool.restarts == {"timeout": 0, "memory": 0, "died": 0}


async def test_a_job_past_its_time_limit_is_killed_and_the_other_job_never_notices(pool: ProcessPool) -> None:
    before = set(pool.pids)
    slow = asyncio.create_task(pool.run(functools.partial(time.sleep, 60), time_limit=1.0))
    await asyncio.sleep(0.1)
    fine = await pool.run(functools.partial(operator.mul, 6, 7))  # runs beside it, in the other child
    with pytest.raises(JobTimedOut):
        await slow
    assert fine == 42
    await until_size(pool, 2)
    assert len(before - set(pool.pids)) == 1, "exactly the child that overran was replaced"
    assert pool.restarts["timeout"] == 1
    assert await pool.run(functools.partial(operator.add, 1, 1)) == 2


async def test_a_job_over_the_memory_limit_fails_alone_and_its_child_is_replaced(pool: ProcessPool) -> None:
    with pytest.raises(JobOutOfMemory):
        await pool.run(functools.partial(bytearray, 2 << 30))  # 2 GiB > 768 MiB
    assert pool.restarts["memory"] == 1
    await until_size(pool, 2)
    assert len(await pool.run(functools.partial(bytearray, 64 << 20))) == 64 << 20  # under the limit: fine


async def test_a_child_that_dies_fails_its_job_and_is_replaced(pool: ProcessPool) -> None:
    with pytest.raises(ChildDied):
        await pool.run(os.abort)
    victim = pool.pids[0]
    os.kill(victim, signal.SIGKILL)  # dies while idle: found before a job is handed to it
    wait_for_exit(victim)
    results = await asyncio.gather(*(pool.run(os.getpid) for _ in range(4)))
    assert victim not in results
    await until_size(pool, 2)
    assert pool.restarts["died"] == 2


async def test_callers_wait_at_most_max_wait_and_urgent_ones_go_first(pool: ProcessPool, tmp_path: Path) -> None:
    """With both children held, a caller with `max_wait` gives up with PoolBusy and leaves no waiter behind, and
    callers that wait are served by priority, then in the order they came. The children are held by jobs that end
    only when the test lets them (not by sleeps, which a loaded machine can outlast), and one child is freed alone,
    so it serves the queue one caller at a time and the order of the answers is the order of service."""
    gates = [tmp_path / "gate-0", tmp_path / "gate-1"]
    busy = [asyncio.create_task(pool.run(gate(path))) for path in gates]
    await until(lambda: pool.idle == 0 and pool.waiting == 0, "both children taken")
    with pytest.raises(PoolBusy):
        await pool.run(os.getpid, max_wait=0.2)
    assert pool.waiting == 0
    order: list[str] = []

    async def queued(name: str, priority: int) -> None:
        await pool.run(os.getpid, priority=priority)
        order.append(name)

    late = [asyncio.create_task(queued(f"job-{n}", 1)) for n in range(3)]
    await until(lambda: pool.waiting == 3, "three callers waiting")
    early = asyncio.create_task(queued("upload", 0))
    await until(lambda: pool.waiting == 4, "the urgent caller waiting too")
    await open_gate(gates[0])
    assert await busy[0] == b"go"
    await asyncio.gather(*late, early)
    assert order == ["upload", "job-0", "job-1", "job-2"]
    assert not busy[1].done()  # the other child was held throughout
    await open_gate(gates[1])
    assert await busy[1] == b"go"


async def test_a_cancelled_caller_loses_no_child(pool: ProcessPool) -> None:
    running = asyncio.create_task(pool.run(functools.partial(time.sleep, 0.5)))
    waiting = [asyncio.create_task(pool.run(os.getpid)) for _ in range(3)]
    await asyncio.sleep(0.1)
    running.cancel()
    for task in waiting[:2]:
        task.cancel()
    await asyncio.gather(running, *waiting, return_exceptions=True)
    await until_size(pool, 2)
    assert len(await asyncio.gather(*(pool.run(os.getpid) for _ in range(6)))) == 6


async def test_closing_kills_every_child_and_fails_jobs_in_flight() -> None:
    pool = ProcessPool(processes=2, limits=LIMITS, name="closing pool")
    await pool.start()
    pids = pool.pids
    job = asyncio.create_task(pool.run(functools.partial(time.sleep, 60)))
    waiting = asyncio.create_task(pool.run(functools.partial(time.sleep, 60)))
    queued = asyncio.create_task(pool.run(os.getpid))
    await asyncio.sleep(0.2)
    await pool.aclose()
    for task in (job, waiting, queued):
        with pytest.raises(PoolClosed):
            await task
    assert child_pids(os.getpid()) == []
    for pid in pids:
        wait_for_exit(pid, within=0)
    with pytest.raises(PoolClosed):
        await pool.run(os.getpid)


def test_children_exit_when_their_parent_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        from labeler.pipeline.procpool.pool import Limits, ProcessPool

        async def main():
            pool = ProcessPool(processes=2, limits=Limits(timeout=30, memory_bytes=0))
            await pool.start()
            print(" ".join(map(str, pool.pids)), flush=True)
            await asyncio.sleep(600)

        asyncio.run(main())
        """
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE) as parent:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        parent.kill()
    assert len(pids) == 2
    for pid in pids:
        wait_for_exit(pid)
