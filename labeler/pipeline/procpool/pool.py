"""A fixed set of child processes; every job runs in one of them under a wall-time and a memory limit.

Why not `concurrent.futures.ProcessPoolExecutor`: it cannot stop one job. A job that runs too long can only be
ended by killing its process, and killing one of the executor's processes breaks the executor, failing every job in
flight with it. Here each child runs one job at a time over a pipe of its own, so the pool kills and replaces
exactly the child that overran, and the other jobs never notice.

    limits.timeout        wall seconds a job may run once a child has it; then SIGKILL, a fresh child takes the
                          place, and the caller gets JobTimedOut
    limits.memory_bytes   address space of each child (RLIMIT_AS): an allocation past it raises MemoryError in the
                          job, the caller gets JobOutOfMemory, and the child is replaced
    run(max_wait=…)       how long a caller waits for a free child before PoolBusy (None: as long as it takes);
                          callers with a lower `priority` number are served first

A child that dies on its own (the kernel's OOM killer, a crash in native code) fails its job with ChildDied and is
replaced too. `launch()` starts the children before the first job, so no job waits long for interpreters and
libraries to load; each child is a fresh interpreter (see `child`), never a fork of this threaded, async process.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import os
import pickle
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Final, TypeVar

from labeler.pipeline.procpool import child as protocol

log = logging.getLogger(__name__)

T = TypeVar("T")

START_TIMEOUT_S: Final = 120.0  # a child importing numpy on a machine this busy can take a while
# One child per core is the parallelism: the libraries inside a job must not start threads of their own.
CHILD_ENV: Final = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# How a call ended, besides the child's own OK / RAISED / OUT_OF_MEMORY.
_TIMED_OUT: Final = "timed-out"
_DIED: Final = "died"
_RESTART_CAUSES: Final = {_TIMED_OUT: "timeout", protocol.OUT_OF_MEMORY: "memory", _DIED: "died"}


class PoolError(Exception):
    """A job did not run to its own end; the subclass says why."""


class JobTimedOut(PoolError):
    """The job ran past its wall-time limit; its child was killed and replaced."""


class JobOutOfMemory(PoolError):
    """The job needed more memory than a child may have; its child was replaced."""


class ChildDied(PoolError):
    """The child running the job died (killed from outside, or crashed in native code); it was replaced."""


class PoolBusy(PoolError):
    """No child became free within the caller's `max_wait`."""


class PoolClosed(PoolError):
    """The pool was closed before or while the job ran."""


@dataclass(frozen=True)
class Limits:
    timeout: float  # wall seconds per job, from the moment a child has it
    memory_bytes: int  # address space per child (RLIMIT_AS); 0: unlimited


class _Child:
    """One child process and the parent's end of its pipe, used by one job (one thread) at a time."""

    def __init__(self, process: subprocess.Popen[bytes], conn: Connection, pid: int) -> None:
        self.process = process
        self.conn = conn
        self.pid = pid

    def call(self, job: Callable[[], Any], timeout: float) -> tuple[str, Any]:
        """Send a job and wait for its answer; blocks, so it runs on one of the pool's threads. Never raises."""
        try:
            payload = pickle.dumps(job, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # nothing was sent: the child is fine
            return protocol.RAISED, exc
        try:
            self.conn.send_bytes(payload)
            del payload
            if not self.conn.poll(timeout):
                self.kill()
                return _TIMED_OUT, None
            answer: tuple[str, Any] = self.conn.recv()
            return answer
        except (EOFError, OSError):
            self.kill()
            return _DIED, self.process.returncode
        except Exception as exc:  # an answer that does not unpickle here; the child is fine
            return protocol.RAISED, PoolError(f"the job's answer could not be read: {type(exc).__name__}: {exc}")

    def kill(self) -> None:
        """Kill, reap and close; only by the thread that owns the child (or when no thread does)."""
        self.process.kill()  # a no-op once reaped
        self.process.wait()
        self.conn.close()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class ProcessPool:
    """`processes` children for jobs under `limits`; children import `preload` modules before they are ready."""

    def __init__(self, *, processes: int, limits: Limits, preload: Sequence[str] = (), name: str = "pool") -> None:
        self.processes = max(1, processes)
        self.limits = limits
        self.preload = tuple(preload)
        self.name = name
        self.restarts: dict[str, int] = dict.fromkeys(_RESTART_CAUSES.values(), 0)
        self._children: set[_Child] = set()
        self._idle: list[_Child] = []
        self._waiters: list[tuple[int, int, asyncio.Future[_Child]]] = []
        self._order = itertools.count()
        self._threads: ThreadPoolExecutor | None = None
        self._started: asyncio.Task[None] | None = None
        self._spawning: set[asyncio.Task[None]] = set()
        self._closed = False
        self._closing = asyncio.Event()

    @property
    def pids(self) -> list[int]:
        """Process ids of the live children (for logs, metrics and tests)."""
        return sorted(c.pid for c in self._children if c.alive)

    @property
    def idle(self) -> int:
        """Children ready for a job now."""
        return len(self._idle)

    @property
    def waiting(self) -> int:
        """Callers waiting for a child now (one that gave up is not counted, though its entry is popped later)."""
        return sum(not waiter.done() for _, _, waiter in self._waiters)

    def launch(self, processes: int | None = None) -> asyncio.Task[None]:
        """Begin starting the children without waiting for them; `processes` sizes a pool not started yet.

        Idempotent: returns the start under way (or done). A failure is logged here, and raised by `start()`.
        """
        if self._closed:
            raise PoolClosed(f"{self.name} is closed")
        if self._started is None:
            if processes is not None:
                self.processes = max(1, processes)
            if self._threads is None:
                self._threads = ThreadPoolExecutor(self.processes, thread_name_prefix=self.name)
            self._started = asyncio.create_task(self._start_children(), name=f"{self.name}-start")
            self._started.add_done_callback(self._log_failed_start)
        return self._started

    async def start(self, processes: int | None = None) -> None:
        """Start the children (see `launch`) and wait until at least one is ready.

        A child that fails to start is tried again in the background; only when none starts does this raise
        PoolError, and the next call tries afresh.
        """
        started = self.launch(processes)
        try:
            await asyncio.shield(started)
        except PoolError:
            if self._started is started:
                self._started = None
            raise

    def _log_failed_start(self, started: asyncio.Task[None]) -> None:
        if not started.cancelled() and started.exception() is not None:
            log.error("%s: %s", self.name, started.exception())

    async def _start_children(self) -> None:
        results = await asyncio.gather(*(self._spawn() for _ in range(self.processes)), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        for result in results:
            if isinstance(result, _Child):
                self._release(result)
        if len(failures) == len(results):
            raise PoolError(f"{self.name}: no process started: {failures[0]}")
        for failure in failures:
            log.error("%s: a process failed to start (%s); trying again in the background", self.name, failure)
            self._keep_spawning()
        log.info("%s: %d processes started (pids %s)", self.name, len(self.pids), ", ".join(map(str, self.pids)))

    async def run(
        self,
        job: Callable[[], T],
        *,
        time_limit: float | None = None,
        priority: int = 0,
        max_wait: float | None = None,
    ) -> T:
        """`job()` in a child; the job's own exceptions are re-raised here as themselves.

        `job` is pickled: a top-level function, or a `functools.partial` of one with picklable arguments. Raises
        JobTimedOut (after `time_limit`, default `limits.timeout`), JobOutOfMemory, ChildDied, PoolBusy (no child free
        within `max_wait`) or PoolClosed.
        """
        await self.start()
        child = await self._acquire(priority, max_wait)
        limit = time_limit or self.limits.timeout
        loop = asyncio.get_running_loop()
        assert self._threads is not None
        call = self._threads.submit(child.call, job, limit)
        # The child goes back, or is replaced, when its call really ends, even if our caller is cancelled first.
        call.add_done_callback(lambda done: loop.call_soon_threadsafe(self._call_ended, child, done))
        status, value = await asyncio.wrap_future(call)
        if status == protocol.OK:
            return value
        if status == protocol.RAISED:
            raise value
        if self._closed:
            raise PoolClosed(f"{self.name} closed while the job ran")
        if status == _TIMED_OUT:
            raise JobTimedOut(f"no answer within {limit:g} s; the process was replaced")
        if status == protocol.OUT_OF_MEMORY:
            raise JobOutOfMemory(f"over the {self.limits.memory_bytes >> 20} MiB memory limit ({value})")
        raise ChildDied(f"the process running the job died (exit status {value})")

    async def aclose(self) -> None:
        """Kill every child (a job in flight ends with PoolClosed) and stop the pool's threads."""
        self._closed = True
        self._closing.set()
        for _, _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(PoolClosed(f"{self.name} is closed"))
        self._waiters.clear()
        # Starts under way finish (a child started after closing is killed at once) rather than being cancelled
        # half-way, which could leave a process nobody reaps.
        await asyncio.gather(*self._spawning, *([self._started] if self._started else []), return_exceptions=True)
        idle, self._idle = self._idle, []
        for child in self._children - set(idle):
            with contextlib.suppress(OSError):
                child.process.kill()  # busy: its thread sees the pipe close, then reaps it
        for child in idle:
            await asyncio.to_thread(child.kill)
        if self._threads is not None:
            await asyncio.to_thread(self._threads.shutdown, wait=True)
        self._children.clear()

    # -- handing children out --

    async def _acquire(self, priority: int, max_wait: float | None) -> _Child:
        while self._idle:
            child = self._idle.pop()
            if child.alive:
                return child
            self._replace(child, _DIED)  # died while idle (the OOM killer, say): replace it, try the next
        waiter: asyncio.Future[_Child] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), waiter))
        try:
            async with asyncio.timeout(max_wait):
                return await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release(waiter.result())  # handed a child just as we gave up: pass it on
            waiter.cancel()
            if isinstance(exc, TimeoutError):
                raise PoolBusy(f"no {self.name} process free within {max_wait:g} s") from None
            raise

    def _release(self, child: _Child) -> None:
        if self._closed:
            child.kill()
            return
        while self._waiters:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():
                waiter.set_result(child)
                return
        self._idle.append(child)

    def _call_ended(self, child: _Child, call: Future[tuple[str, Any]]) -> None:
        status = protocol.OK if call.cancelled() else call.result()[0]  # cancelled: never ran, child untouched
        if status in (protocol.OK, protocol.RAISED):
            self._release(child)
        else:
            self._replace(child, status)

    # -- starting children --

    def _replace(self, child: _Child, status: str) -> None:
        self._children.discard(child)
        if self._closed:
            return
        cause = _RESTART_CAUSES[status]
        self.restarts[cause] += 1
        # Anyone can cause this with one image, so it is news, not an error.
        log.info("%s: process %d replaced (%s)", self.name, child.pid, cause)
        self._keep_spawning(child)

    def _keep_spawning(self, old: _Child | None = None) -> None:
        task = asyncio.create_task(self._spawn_until_started(old), name=f"{self.name}-spawn")
        self._spawning.add(task)
        task.add_done_callback(self._spawning.discard)

    async def _spawn_until_started(self, old: _Child | None) -> None:
        if old is not None:
            await asyncio.to_thread(old.kill)  # reap it; a no-op when its thread already did
        delay = 0.1
        while not self._closed:
            try:
                self._release(await self._spawn())
                return
            except PoolError as exc:
                if self._closed:
                    return
                log.error("%s: cannot start a process (%s); trying again in %.1f s", self.name, exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), delay)
                delay = min(delay * 2, 30.0)

    async def _spawn(self) -> _Child:
        child = await asyncio.to_thread(self._spawn_blocking)
        if self._closed:
            await asyncio.to_thread(child.kill)
            raise PoolClosed(f"{self.name} is closed")
        self._children.add(child)
        return child

    def _spawn_blocking(self) -> _Child:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            command = [sys.executable, "-m", protocol.__name__, str(theirs.fileno()), str(self.limits.memory_bytes)]
            process = subprocess.Popen(
                [*command, *self.preload],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env={**os.environ, **CHILD_ENV},
            )
            conn = Connection(os.dup(ours.fileno()))
        try:
            if not conn.poll(START_TIMEOUT_S):
                raise PoolError(f"no answer within {START_TIMEOUT_S:g} s")
            status, pid = conn.recv()
            if status != protocol.READY:
                raise PoolError(f"unexpected first message {status!r}")
        except (PoolError, EOFError, OSError) as exc:
            process.kill()
            process.wait()
            conn.close()
            if isinstance(exc, PoolError):
                raise
            raise PoolError(f"exited while starting (status {process.returncode})") from None
        return _Child(process, conn, pid)
