"""`labeler serve` as a real subprocess on a free loopback port: start (waiting for health), SIGKILL, stop.

For tests about what survives a process: crashes, restarts, several processes on one PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from support.server import free_port


class ServeProcess:
    """One `labeler serve` on `database_url`, keys in `workdir/keys`; `env` adds or overrides settings. `did` None
    is the embedded default: the did:web of its own public URL, served from the key it makes on first start."""

    def __init__(
        self, name: str, database_url: str, workdir: Path, *, password: str, did: str | None, **env: str
    ) -> None:
        self.name = name
        self.port = free_port()
        self.workdir = workdir
        self.starts = 0
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LABELER_")}
        self.env.update(
            LABELER_DATABASE_URL=database_url,
            LABELER_KEYS_DIR=str(workdir / "keys"),
            LABELER_ADMIN_PASSWORD=password,
            LABELER_PORT=str(self.port),
            LABELER_PUBLIC_URL=f"http://localhost:{self.port}",
            LABELER_WORKERS="0",
            LABELER_LOG_LEVEL="warning",
        )
        if did is not None:
            self.env["LABELER_DID"] = did
        self.env.update(env)
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"serve-{self.name}-{self.starts}.log"

    async def start(self) -> None:
        """Start and wait until it answers its health check (or fail with its log if it exits)."""
        self.starts += 1
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "labeler", "serve", env=self.env, cwd=self.workdir, stdout=log, stderr=log
            )
        async with httpx.AsyncClient(base_url=self.url) as http:
            while True:
                if self.proc.returncode is not None:
                    pytest.fail(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/xrpc/_health")).status_code == 200:
                        return
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        assert await self.proc.wait() == -signal.SIGKILL

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]
