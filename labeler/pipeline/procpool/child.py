"""The loop each pool child runs: take its memory limit, say it is ready, then run one job at a time.

Started by `pool.ProcessPool` as `python -m labeler.pipeline.procpool.child FD MEMORY_BYTES [MODULE ...]`, not forked
from the parent: a fresh interpreter imports only the modules the jobs need (named on the command line), holds none
of the parent's threads, sockets or keys, and shows in `ps` for what it is.

Protocol over the socket FD (pickles, `multiprocessing.connection`): the child sends `(READY, pid)` once; then for
every job (a picklable callable taking no arguments) it receives it answers `(OK, result)`, `(RAISED, exception)` or
`(OUT_OF_MEMORY, detail)`. After running out of memory it exits instead of taking another job, since a process
whose allocation failed half-way is not one to trust with the next; the pool starts a fresh one. The child exits
when the parent's end closes, so a parent killed with SIGKILL leaves no child behind.
"""

from __future__ import annotations

import importlib
import os
import resource
import signal
import sys
from multiprocessing.connection import Connection
from typing import Final

READY: Final = "ready"
OK: Final = "ok"
RAISED: Final = "raised"
OUT_OF_MEMORY: Final = "out-of-memory"


def main(argv: list[str]) -> None:
    fd, memory_bytes, modules = int(argv[0]), int(argv[1]), argv[2:]
    # Ctrl-C in a terminal signals the whole process group: the parent decides when its children stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for module in modules:
        importlib.import_module(module)
    if memory_bytes > 0:
        # Address space, set after the imports so that a limit too small for the libraries fails jobs, not start-up.
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    conn = Connection(fd)
    conn.send((READY, os.getpid()))
    serve(conn)


def serve(conn: Connection) -> None:
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        except MemoryError as exc:  # the job's input alone was over the limit
            conn.send((OUT_OF_MEMORY, f"receiving the job: {exc}"))
            return
        try:
            reply: tuple[str, object] = (OK, job())
        except MemoryError as exc:
            reply = (OUT_OF_MEMORY, str(exc) or "MemoryError")
        except Exception as exc:
            reply = (RAISED, exc)
        del job  # its input (an image, say) is not kept while waiting for the next
        try:
            conn.send(reply)
        except Exception as exc:  # an unpicklable result or exception: say so rather than leave the parent waiting
            conn.send((RAISED, RuntimeError(f"the job's answer cannot be sent back: {type(exc).__name__}: {exc}")))
        if reply[0] == OUT_OF_MEMORY:
            return


if __name__ == "__main__":
    main(sys.argv[1:])
