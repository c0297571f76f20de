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

from sqlalchemy.engine import make_url

from labeler.store.engine import StoreError

MESSAGE = "SQLite supports one labeler process; use PostgreSQL to run several"


class SingleProcessError(StoreError):
    """Another long-running labeler process already uses this SQLite database."""


def lock_path_for(database_url: str) -> Path | None:
    """`<database file>.lock`, or None for PostgreSQL and in-memory SQLite (nothing to share)."""
    url = make_url(database_url)
    if not url.drivername.startswith("sqlite"):
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        return None
    return Path(database + ".lock")


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
            holder = _read_holder(handle)
            handle.close()
            raise SingleProcessError(f"{MESSAGE} ({self.path} is held{holder})") from None
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


def _read_holder(handle: IO[str]) -> str:
    with contextlib.suppress(OSError, ValueError):
        handle.seek(0)
        pid = int(handle.read().strip())
        return f" by pid {pid}"
    return ""


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
            raise SingleProcessError(f"{MESSAGE} ({path} is held{_read_holder(handle)})") from None
        finally:
            handle.close()  # closing drops our probe lock with it
