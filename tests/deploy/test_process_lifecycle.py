"""`labeler serve` as real processes: one process per SQLite file, short CLI commands beside it, and a SIGTERM
that finishes in-flight writes, closes subscribers cleanly and exits 0 (what `docker stop` relies on)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from support.server import free_port

from labeler.config import load_settings
from labeler.keys import Keyring
from labeler.service import Labeler
from labeler.single_process import MESSAGE, SingleProcessError

pytestmark = pytest.mark.slow

ADMIN = ("admin", "deploy-test-password")
EMIT = "/xrpc/tools.ozone.moderation.emitEvent"
QUERY = "/xrpc/com.atproto.label.queryLabels"
CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
STARTUP_TIMEOUT = 30.0


@dataclass
class Workdir:
    path: Path
    settings: dict[str, str] = field(default_factory=dict)  # LABELER_* for every process run here

    @property
    def db(self) -> Path:
        return self.path / "labeler.db"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABELER_")}
        env.update(
            LABELER_DATABASE_URL=f"sqlite+aiosqlite:///{self.db}",
            LABELER_KEYS_DIR=str(self.path / "keys"),
            LABELER_DID="did:plc:deploytestdeploytest1234",
            LABELER_ADMIN_PASSWORD=ADMIN[1],
            LABELER_HOST="127.0.0.1",
            LABELER_LOG_LEVEL="warning",
        )
        env.update(self.settings)
        env.update(extra)
        return env

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "labeler", *args],
            env=self.env(),
            cwd=self.path,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@dataclass
class Serve:
    proc: subprocess.Popen[str]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text()


@pytest.fixture
def work(tmp_path: Path) -> Workdir:
    return Workdir(tmp_path)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Every process a test starts; any still running at the end is killed by its pid."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def start_serve(work: Workdir, processes: list[subprocess.Popen[str]], *, wait: bool = True) -> Serve:
    Keyring.open(work.path / "keys").ensure_active()  # the operator's key: serve makes none for a did:plc
    port = free_port()
    log = work.path / f"serve-{port}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "labeler", "serve", "--port", str(port)],
            env=work.env(),
            cwd=work.path,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    processes.append(proc)
    serve = Serve(proc, port, log)
    if wait:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert proc.poll() is None, f"serve exited {proc.returncode}:\n{serve.output()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{serve.url}/xrpc/_health", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"serve did not become ready:\n{serve.output()}"
            time.sleep(0.1)
    return serve


def stop(serve: Serve, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    serve.proc.send_signal(sig)
    return serve.proc.wait(timeout)


def emit_body(uri: str) -> dict[str, Any]:
    return {
        "event": {
            "$type": "tools.ozone.moderation.defs#modEventLabel",
            "createLabelVals": ["spam"],
            "negateLabelVals": [],
        },
        "subject": {"$type": "com.atproto.repo.strongRef", "uri": uri, "cid": CID},
        "createdBy": "did:plc:moderatormoderator123456",
    }


async def all_labels(url: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while True:
            params: dict[str, Any] = {"uriPatterns": "at://*", "limit": 250}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get(QUERY, params=params)).json()
            out.extend(page["labels"])
            cursor = page.get("cursor")
            if not cursor:
                return out


# --- one process per SQLite file -------------------------------------------------------------------------------


def test_a_second_serve_on_the_same_sqlite_file_refuses_clearly(
    work: Workdir, processes: list[subprocess.Popen[str]]
) -> None:
    first = start_serve(work, processes)
    second = start_serve(work, processes, wait=False)
    assert second.proc.wait(STARTUP_TIMEOUT) != 0
    assert MESSAGE in second.output() and f"another labeler process (pid {first.proc.pid})" in second.output()
    assert "Traceback" not in second.output()  # one clear line, not a startup stack trace
    assert first.proc.poll() is None and httpx.get(f"{first.url}/livez").status_code == 200

    # The lock inside Labeler.start is the real guard (the CLI's early check can race): it refuses too.
    async def start_here() -> None:
        service = Labeler(load_settings(env=work.env()))
        try:
            await service.start()
        finally:
            await service.aclose()

    with pytest.raises(SingleProcessError, match=re.escape(MESSAGE)):
        asyncio.run(start_here())
    assert first.proc.poll() is None

    # PostgreSQL-only scale-out aside, the lock is not in the way of a different SQLite file.
    other = Workdir(work.path / "other")
    other.path.mkdir()
    start_serve(other, processes)


def test_short_cli_commands_work_while_serve_runs(work: Workdir, processes: list[subprocess.Popen[str]]) -> None:
    serve = start_serve(work, processes)
    upgrade = work.cli("db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    uri = "at://did:plc:clibesideserve12345678/app.bsky.feed.post/3kcli"
    added = work.cli("label", "add", uri, "spam")
    assert added.returncode == 0, added.stderr
    listed = work.cli("label", "list", "--json")
    assert listed.returncode == 0 and uri in {row["uri"] for row in json.loads(listed.stdout)}
    # The running server sees the CLI's label (same database; its hub's poll picks up outside commits).
    labels = httpx.get(f"{serve.url}{QUERY}", params={"uriPatterns": uri}).json()["labels"]
    assert [x["val"] for x in labels] == ["spam"]
    assert stop(serve) == 0


def test_a_killed_serve_leaves_no_stale_lock(work: Workdir, processes: list[subprocess.Popen[str]]) -> None:
    first = start_serve(work, processes)
    assert stop(first, signal.SIGKILL) == -signal.SIGKILL
    second = start_serve(work, processes)  # the kernel dropped the flock with the process
    assert stop(second) == 0
    third = start_serve(work, processes)  # and a clean exit released it
    assert stop(third) == 0


# --- graceful shutdown -----------------------------------------------------------------------------------------


async def test_sigterm_finishes_in_flight_writes_closes_subscribers_and_exits_0(
    work: Workdir, processes: list[subprocess.Popen[str]]
) -> None:
    serve = start_serve(work, processes)
    acknowledged: list[str] = []
    failed = 0
    streamed: list[bytes] = []
    close_codes: list[int | None] = []
    stop_writing = asyncio.Event()
    subscribed = asyncio.Event()

    async def subscriber() -> None:
        async with websockets.connect(f"ws://127.0.0.1:{serve.port}/xrpc/com.atproto.label.subscribeLabels") as ws:
            subscribed.set()  # live from the head as it was before the handshake: every later label comes here
            with contextlib.suppress(websockets.ConnectionClosed):
                async for frame in ws:
                    assert isinstance(frame, bytes)
                    streamed.append(frame)
            close_codes.append(ws.close_code)

    async def writer(n: int) -> None:
        nonlocal failed
        async with httpx.AsyncClient(base_url=serve.url, auth=ADMIN, timeout=30) as client:
            i = 0
            while not stop_writing.is_set():
                uri = f"at://did:plc:shutdownshutdown{n:08d}/app.bsky.feed.post/{i:08d}"
                i += 1
                try:
                    response = await client.post(EMIT, json=emit_body(uri))
                except httpx.HTTPError:
                    failed += 1
                    await asyncio.sleep(0.01)
                    continue
                if response.status_code == 200:
                    acknowledged.append(uri)  # the server said committed: this one must survive
                else:
                    failed += 1  # 503s while shutting down are not acknowledgements

    sub = asyncio.create_task(subscriber())
    while not subscribed.is_set():  # the handshake done, not a guess at how long it takes
        assert not sub.done(), sub
        await asyncio.sleep(0.02)
    writers = [asyncio.create_task(writer(n)) for n in range(16)]
    while len(acknowledged) < 300:
        assert serve.proc.poll() is None, serve.output()
        await asyncio.sleep(0.02)
    serve.proc.send_signal(signal.SIGTERM)  # mid-write: 16 clients have requests in flight
    code = await asyncio.to_thread(serve.proc.wait, 40)
    stop_writing.set()
    await asyncio.gather(*writers)
    await asyncio.wait_for(sub, 10)

    assert code == 0, serve.output()
    assert "Traceback" not in serve.output(), serve.output()
    assert close_codes and close_codes[0] in (1000, 1001, 1012), close_codes  # a close frame, not a dropped socket
    assert len(streamed) > 0

    restarted = start_serve(work, processes)
    present = {label["uri"] for label in await all_labels(restarted.url)}
    missing = set(acknowledged) - present
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged labels lost"
    assert stop(restarted) == 0


# --- logs of a real process ------------------------------------------------------------------------------------


def test_serve_with_json_logs_writes_only_json_lines_and_no_secrets(
    work: Workdir, processes: list[subprocess.Popen[str]]
) -> None:
    serve = start_serve(Workdir(work.path, {"LABELER_LOG_FORMAT": "json", "LABELER_LOG_LEVEL": "info"}), processes)
    httpx.post(f"{serve.url}{EMIT}", json=emit_body("at://did:plc:logslogslogslogs12345678/app.bsky.feed.post/1"),
               auth=ADMIN)  # fmt: skip
    httpx.post(f"{serve.url}{EMIT}", json={}, auth=("admin", "wrong-password-in-a-log"))
    httpx.get(f"{serve.url}/xrpc/_health", headers={"authorization": "Bearer secret-bearer-token-value"})
    assert stop(serve) == 0
    lines = [json.loads(line) for line in serve.output().splitlines()]  # every line parses as JSON
    assert all({"ts", "level", "logger", "msg"} <= set(x) for x in lines)
    assert any(x["logger"] == "uvicorn.access" and x.get("status") == 200 for x in lines)
    assert any(x["logger"] == "uvicorn.error" and "Finished server process" in x["msg"] for x in lines)
    for secret in (ADMIN[1], "wrong-password-in-a-log", "secret-bearer-token-value"):
        assert secret not in serve.output()
