"""Media hashing off the event loop: `hash_image` (PDQ) and `hash_video` (vPDQ) in one process pool, each blob
under its wall-time and memory limits.

PDQ holds the GIL, so threads would not help; and an image is hostile input: one can take a thousand times the
CPU of another, or gigabytes (issue 15: a 1,000-scan JPEG, a 631-byte JPEG declaring 7000×7000, PNG bombs). So
each image runs in a `procpool.ProcessPool` child that is killed and replaced when it runs out of time, and whose
address space is capped. What a caller sees:

    PdqResult        hashed
    ImageRejected    the bytes cannot be hashed: the hasher's own reasons, plus too-slow (over the wall-time
                     limit) and too-much-memory (over the memory limit); final, since the same bytes would do it again
    HasherCrashed    the process died for another reason (killed from outside, a crash in native code): retry later
    HasherBusy       no process was free within the caller's `max_wait` (upload checks): retry later
    VideoHash / VideoRejected   the same for a video, with its own (longer) wall-time limit; a video whose
                     decoding kills its process is rejected as crashed rather than retried

Videos share the processes with images: hashing is CPU work either way, and one process is one core. A video's
decoders run in the child, where the pool's address-space limit bounds them too.

The pool is public (`HashPool.pool`) so that other kinds of media job can run under the same limits in the same
processes: `await hasher.pool.run(functools.partial(function, …), time_limit=…)`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from labeler.pipeline.hasher import TOO_MUCH_MEMORY, TOO_SLOW, ImageRejected, PdqResult, hash_image
from labeler.pipeline.procpool.pool import (
    ChildDied,
    JobOutOfMemory,
    JobTimedOut,
    Limits,
    PoolBusy,
    PoolClosed,
    PoolError,
    ProcessPool,
)
from labeler.pipeline.signals import MediaRejected
from labeler.pipeline.signals.video import CRASHED, VideoHash, VideoLimits, VideoRejected, hash_video

T = TypeVar("T")

# Pipeline jobs wait behind upload checks, whose callers are waiting for an answer.
UPLOAD_PRIORITY = 0
JOB_PRIORITY = 1


class HasherCrashed(Exception):
    """A hashing process died (or the pool is closing); the image may be tried again."""


class HasherBusy(Exception):
    """No hashing process became free in time; try again later."""


class HashPool:
    """Hashes images in `processes` child processes, within fixed input limits and per-image `limits`."""

    def __init__(
        self,
        *,
        processes: int,
        limits: Limits,
        max_bytes: int,
        max_pixels: int,
        max_jpeg_scans: int,
        reduced_decode: bool = False,
        dihedral: bool = False,
        video: VideoLimits | None = None,
        video_timeout: float = 120.0,
    ) -> None:
        self.pool = ProcessPool(
            processes=processes, limits=limits, preload=("labeler.pipeline.hasher",), name="hash pool"
        )
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.max_jpeg_scans = max_jpeg_scans
        self.reduced_decode = reduced_decode
        self.dihedral = dihedral
        self.video = video or VideoLimits()
        self.video_timeout = video_timeout

    def launch(self, processes: int | None = None) -> None:
        """Start the hashing processes in the background (`processes` of them, if the pool has not started yet)."""
        self.pool.launch(processes)

    async def start(self, processes: int | None = None) -> None:
        """Start the hashing processes and wait until they are ready; HasherCrashed if none could start."""
        try:
            await self.pool.start(processes)
        except PoolError as exc:
            raise HasherCrashed(str(exc)) from None

    async def hash(
        self,
        data: bytes,
        *,
        dihedral: bool | None = None,
        priority: int = JOB_PRIORITY,
        max_wait: float | None = None,
    ) -> PdqResult:
        """PDQ hash and quality of `data`; raises ImageRejected, HasherCrashed or HasherBusy (see module doc)."""
        job = functools.partial(
            hash_image,
            data,
            max_bytes=self.max_bytes,
            max_pixels=self.max_pixels,
            max_jpeg_scans=self.max_jpeg_scans,
            reduced_decode=self.reduced_decode,
            dihedral=self.dihedral if dihedral is None else dihedral,
        )
        return await self._run(job, ImageRejected, None, priority, max_wait)

    async def hash_video(self, path: Path, *, priority: int = JOB_PRIORITY, max_wait: float | None = None) -> VideoHash:
        """vPDQ hash of the video file at `path` within `video_timeout` wall seconds; raises VideoRejected (with
        too-slow and too-much-memory as for images), HasherCrashed or HasherBusy."""
        job = functools.partial(hash_video, str(path), self.video)
        # FFmpeg's decoders and vpdq are native code on hostile input: a video that kills its process (a crash, or
        # an allocation refused inside C++, which aborts) would kill the next one too. Refused, not retried.
        return await self._run(job, VideoRejected, self.video_timeout, priority, max_wait, crash_rejects=True)

    async def _run(
        self,
        job: Callable[[], T],
        rejected: type[MediaRejected],
        time_limit: float | None,
        priority: int,
        max_wait: float | None,
        *,
        crash_rejects: bool = False,
    ) -> T:
        """`job` in the pool, its ends told as the module doc says: over time or memory is `rejected`, and so is
        killing its process when `crash_rejects`."""
        try:
            return await self.pool.run(job, time_limit=time_limit, priority=priority, max_wait=max_wait)
        except JobTimedOut as exc:
            raise rejected(TOO_SLOW, str(exc)) from None
        except JobOutOfMemory as exc:
            raise rejected(TOO_MUCH_MEMORY, str(exc)) from None
        except ChildDied as exc:
            if crash_rejects:
                raise rejected(CRASHED, str(exc)) from None
            raise HasherCrashed(str(exc)) from None
        except PoolBusy as exc:
            raise HasherBusy(str(exc)) from None
        except (PoolClosed, PoolError) as exc:
            raise HasherCrashed(str(exc)) from None

    async def aclose(self) -> None:
        await self.pool.aclose()
