"""Which processes exist, read from /proc: the pool's children are real processes a test can count and watch."""

from __future__ import annotations

import time
from pathlib import Path

CHILD_MODULE = "labeler.pipeline.procpool.child"


def child_pids(parent: int) -> list[int]:
    """Live pool children (`python -m labeler.pipeline.procpool.child …`) whose parent is `parent`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # stat: "pid (comm) state ppid …"; comm may hold spaces and parentheses, so split after the last ")".
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == parent and state != "Z" and CHILD_MODULE.encode() in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def wait_for_exit(pid: int, within: float = 30.0) -> None:
    """Until `pid` is gone (or a zombie, which no longer runs anything)."""
    deadline = time.monotonic() + within
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state == "Z":
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"process {pid} still runs after {within} s")
        time.sleep(0.05)
