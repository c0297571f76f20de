"""The hashing processes start with the service, sized from the workers it runs (issue 16 item 10, issue 17 item 2).

Counted from /proc: a hashing process is a child running `labeler.pipeline.procpool.child`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from labeler.keys import Keyring
from labeler.service import Labeler

from .corpus import encode, structured_rgb
from .processes import child_pids

IMAGE = encode(structured_rgb(320, 240, seed=4), "PNG")


async def eventually(check: Callable[[], bool], what: str, within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"no {what} after {within} s"
        await asyncio.sleep(0.05)


async def test_the_first_image_finds_the_hashing_processes_already_running(make_settings: Any) -> None:
    labeler = Labeler(make_settings(workers=1))
    try:
        await labeler.start(workers=1)  # no image asks for them here
        await eventually(lambda: len(child_pids(os.getpid())) == 1, "the hashing process, started with the workers")
        running = child_pids(os.getpid())
        await labeler.pipeline.hasher.hash(IMAGE)
        assert child_pids(os.getpid()) == running
    finally:
        await labeler.aclose()
    assert child_pids(os.getpid()) == []


async def test_the_upload_api_alone_starts_one_hashing_process(make_settings: Any) -> None:
    labeler = Labeler(make_settings(workers=0, upload_tokens="t"))
    try:
        await labeler.start(workers=0, hashing=True)
        await eventually(lambda: len(child_pids(os.getpid())) == 1, "one hashing process, for the upload API")
    finally:
        await labeler.aclose()


async def test_short_commands_start_no_hashing_process(make_settings: Any) -> None:
    labeler = Labeler(make_settings())
    try:
        await labeler.start()
        await asyncio.sleep(1.0)  # time enough for a start in the background to show
        assert child_pids(os.getpid()) == []
    finally:
        await labeler.aclose()


@pytest.mark.parametrize("command", [["worker", "--workers", "2"], ["ingest", "--workers", "2"]])
async def test_the_cli_runs_one_hashing_process_per_worker(command: list[str], tmp_path: Path) -> None:
    """`labeler worker --workers 2` used to hash with one process: the pool was sized from LABELER_WORKERS (1)."""
    Keyring.open(tmp_path / "keys").generate()  # the operator's key: workers make none for a did:plc
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELER_")}
    env.update(
        LABELER_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'labeler.db'}", LABELER_KEYS_DIR=str(tmp_path / "keys"),
        LABELER_DID="did:plc:workertestworkertestwork", LABELER_WORKERS="1",
        # ingest needs a source; nothing listens there, so it keeps retrying while we look.
        LABELER_JETSTREAM_URL="ws://127.0.0.1:9/subscribe",
    )  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "labeler", *command, cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        output = b""
        while b"hashing process" not in output:  # both commands print one line once started
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=120)
            assert line, output.decode()
            output += line
        assert len(child_pids(proc.pid)) == 2, output.decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, (output + rest).decode()
