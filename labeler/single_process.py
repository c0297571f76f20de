"""One long-running labeler process per SQLite file, enforced with an advisory lock on `<db>.lock`.

SQLite serialises writers, but the stream hub only fans out what its own process commits (plus a slow poll), and
job claims assume one claimer, so two `serve`/`worker` processes on one file would silently misbehave. The lock
makes the second one refuse with a message that says what to do instead. Short CLI commands do not take it:
they only write through SQLite's own locking and exit.

`flock` locks belong to the open file, so the kernel drops ours when the process dies, even by SIGKILL: a crash
never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import IO

from labeler.store.engine import StoreError, sqlite_file

MESSAGE = "stop it, or use PostgreSQL to run several (SQLite supports one labeler process)"


class SingleProcessError(StoreError):
    """Another long-running labeler process already uses this SQLite database."""


def lock_path_for(database_url: str) -> Path | None:
    """`<database file>.lock`, or None for PostgreSQL and in-memory SQLite (nothing to share)."""
    database = sqlite_file(database_url)
    return None if database is None else Path(f"{database}.lock")


class ProcessLock:
    """An exclusive, non-blocking `flock` on one file; `acquire` raises SingleProcessError when it is held."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> None:
        if self._file is not None:
            return
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            error = _refusal(self.path, handle)
            handle.close()
            raise error from None
        except BaseException:
            handle.close()
            raise
        # The holder's pid is only for the message a second process prints; the lock itself is the flock.
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        handle, self._file = self._file, None
        if handle is None:
            return
        with contextlib.suppress(OSError):
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()


def _refusal(lock: Path, handle: IO[str]) -> SingleProcessError:
    """What the second process says: which process holds the database, and the two ways on."""
    holder = ""
    with contextlib.suppress(OSError, ValueError):
        handle.seek(0)
        holder = f" (pid {int(handle.read().strip())})"
    database = lock.with_name(lock.name.removesuffix(".lock"))
    return SingleProcessError(f"{database} is in use by another labeler process{holder}: {MESSAGE}")


def check_free(database_url: str) -> None:
    """Fail fast, before a server starts, when another process holds the lock (the real lock is taken later, in
    `Labeler.start`, so a race between the two is still refused there)."""
    path = lock_path_for(database_url)
    if path is None or not path.exists():
        return
    with contextlib.suppress(FileNotFoundError):
        handle = path.open("r")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _refusal(path, handle) from None
        finally:
            handle.close()  # closing drops our probe lock with it
