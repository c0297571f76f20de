"""Hashing off the event loop: `hash_image` in a process pool (pdqhash holds the GIL, so threads would not help).

The pool starts lazily on the first image and is rebuilt if a child dies (e.g. killed for memory); the image
that was in flight then fails with `HasherCrashed`, which callers treat as retryable. Children are started
with forkserver (spawn where unavailable), never forked from the threaded, async parent.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from labeler.pipeline.hasher import PdqResult, hash_image


class HasherCrashed(Exception):
    """A hashing process died; the pool was rebuilt and the image may be tried again."""


class HashPool:
    """Hashes images within fixed limits in up to `processes` child processes."""

    def __init__(
        self, *, processes: int, max_bytes: int, max_pixels: int, reduced_decode: bool = False, dihedral: bool = False
    ) -> None:
        self.processes = max(1, processes)
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.reduced_decode = reduced_decode
        self.dihedral = dihedral
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            context = multiprocessing.get_context(method)
            if method == "forkserver":
                context.set_forkserver_preload(["labeler.pipeline.hasher"])
            self._pool = ProcessPoolExecutor(max_workers=self.processes, mp_context=context)
        return self._pool

    async def hash(self, data: bytes, *, dihedral: bool | None = None) -> PdqResult:
        """PDQ hash and quality of `data`; raises `ImageRejected` (bad input) or `HasherCrashed`."""
        call = functools.partial(
            hash_image,
            data,
            max_bytes=self.max_bytes,
            max_pixels=self.max_pixels,
            reduced_decode=self.reduced_decode,
            dihedral=self.dihedral if dihedral is None else dihedral,
        )
        pool = self._executor()
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, call)
        except BrokenProcessPool as e:
            if self._pool is pool:
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise HasherCrashed("a hashing process died") from e

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
