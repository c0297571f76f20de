"""One labeler installation driven through the `labeler` CLI as an operator runs it, for the e2e tests.

CLI commands run in a worker thread (they start their own event loop), so a labeler served by real uvicorn in the
test's event loop keeps answering meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from labeler.cli import cli
from labeler.config import Settings, load_settings
from labeler.keys import Keyring
from labeler.service import Labeler
from labeler.testing import LiveServer, serve_labeler

from .harness import Devnet


@dataclass
class Operator:
    """One labeler installation: a folder with labeler.toml, keys/ and the database, driven through the CLI."""

    folder: Path
    devnet: Devnet
    public_url: str = "http://localhost:1"  # until the labeler is served and `did update` publishes the real one
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {
            "LABELER_CONFIG": str(self.folder / "labeler.toml"),
            "LABELER_PUBLIC_URL": self.public_url,
            **self.extra_env,
        }

    @property
    def settings(self) -> Settings:
        return load_settings(env=self.env)

    @property
    def keyring(self) -> Keyring:
        return Keyring.open(self.settings.keys_dir)

    def invoke(self, *args: str, stdin: Any = None) -> Result:
        return CliRunner().invoke(cli, list(args), env=self.env, input=stdin)

    async def ok(self, *args: str, stdin: Any = None) -> str:
        """Run a command in a worker thread (it starts its own event loop); it must succeed."""
        result = await asyncio.to_thread(self.invoke, *args, stdin=stdin)
        assert result.exit_code == 0, f"labeler {' '.join(args)}: {result.output}"
        return result.output

    async def fails(self, *args: str) -> str:
        """Run a command that must fail cleanly: exit 1, a message, no traceback."""
        result = await asyncio.to_thread(self.invoke, *args)
        assert result.exit_code == 1, f"labeler {' '.join(args)} should fail: {result.output}"
        assert "Traceback" not in result.output and "Error:" in result.output
        return result.output


async def new_operator(devnet: Devnet, folder: Path, *, plc_url: str | None = None) -> Operator:
    """`labeler init`, non-interactive, for a did:plc labeler in `folder`."""
    op = Operator(folder, devnet)
    await op.ok(
        "init", "--no-input", "--did-method", "plc", "--config", str(folder / "labeler.toml"),
        "--public-url", op.public_url, "--database-url", f"sqlite+aiosqlite:///{folder / 'labeler.db'}",
        "--keys-dir", str(folder / "keys"), "--plc-url", plc_url or devnet.plc_url,
    )  # fmt: skip
    return op


@contextlib.asynccontextmanager
async def served(op: Operator, port: int = 0) -> AsyncIterator[tuple[Labeler, LiveServer]]:
    """Our labeler for `op`, on real uvicorn; the operator's public URL becomes http://localhost:PORT. A labeler
    serves as the DID its configuration names when it starts: after `did link-pds`, serve again (on `port`, the
    published one) as an operator restarts `labeler serve`."""
    labeler = Labeler(op.settings)
    await labeler.start()
    try:
        async with serve_labeler(labeler, port=port) as live:
            op.public_url = f"http://localhost:{live.port}"
            yield labeler, live
    finally:
        await labeler.aclose()
