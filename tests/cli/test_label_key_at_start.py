"""The long-running commands (`serve`, `worker`, `ingest --workers`) make a development label key only where a key
made at start is published as it is made: our own did:web, whose document `serve` makes from the active key. For a
did:plc, or a did:web served elsewhere, with no active key they refuse, write nothing, and name the commands that
make a key the DID document names; running those makes them start. Real processes on real SQLite files."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from support.memory_plc import MemoryPlc, running_memory_plc
from support.serve_process import ServeProcess
from support.server import RunningServer, free_port

from labeler.cli import cli
from labeler.config import load_settings
from labeler.keys import ROTATION_KEY_FILE, Keyring

pytestmark = pytest.mark.slow

LONG_RUNNING = [["serve"], ["worker"], ["ingest", "--workers", "1"]]
PLC_DID = "did:plc:keyguardkeyguardkeyguard"


def labeler(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`labeler ARGS` as its own process in `cwd` (its labeler.toml, if any, is the config)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("LABELER_")}
    return subprocess.run(
        [sys.executable, "-m", "labeler", *args],
        env={
            **base,
            "LABELER_DATABASE_URL": f"sqlite+aiosqlite:///{cwd / 'labeler.db'}",
            "LABELER_PORT": str(free_port()),
            "LABELER_JETSTREAM_URL": "ws://127.0.0.1:9/subscribe",  # ingest needs a source; nothing listens there
            **env,
        },
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def refused(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("Error: no active label key"), result.stderr
    return result.stderr


@pytest.mark.parametrize("command", LONG_RUNNING, ids=" ".join)
def test_a_did_plc_without_a_key_refuses_to_start_and_writes_nothing(command: list[str], tmp_path: Path) -> None:
    message = refused(labeler(tmp_path, *command, LABELER_DID=PLC_DID))
    assert f"{PLC_DID}'s DID document" in message and "fail verification" in message
    for fix in ("labeler keys rotate", "labeler did update", "labeler did link-pds", "labeler keys import"):
        assert fix in message
    assert list(tmp_path.iterdir()) == []  # no key, no keyring, no database, no lock file


def test_a_did_web_served_elsewhere_without_a_key_is_refused_too(tmp_path: Path) -> None:
    message = refused(labeler(tmp_path, "worker", LABELER_DID="did:web:labels.example.org"))
    assert "labeler keys import" in message and "#atproto_label" in message
    assert list(tmp_path.iterdir()) == []


def test_ingest_without_workers_needs_no_key(tmp_path: Path) -> None:
    """Sources alone sign nothing: the refusal is not in their way (stopped here by its own missing setting)."""
    result = labeler(tmp_path, "ingest", LABELER_DID=PLC_DID, LABELER_JETSTREAM_URL="")
    assert result.returncode == 1 and "nothing to ingest" in result.stderr, result.stderr


@pytest.fixture(scope="module")
def memory_plc() -> Iterator[tuple[MemoryPlc, RunningServer]]:
    with running_memory_plc() as running:
        yield running


def ok(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_named_fix_for_a_did_plc_lets_the_worker_start(
    tmp_path: Path, memory_plc: tuple[MemoryPlc, RunningServer]
) -> None:
    """A fresh machine holding only the rotation key of an existing did:plc: refused; `labeler keys rotate`, as the
    refusal says, publishes a new key and activates it; then the worker starts (and drains an empty queue)."""
    plc, server = memory_plc
    ok("init", "--no-input", "--did-method", "plc", "--plc-url", server.url, "--public-url", "https://labels.test")
    ok("keys", "generate", "--purpose", "rotation")
    ok("did", "create")
    did = load_settings().did
    keys = tmp_path / "keys"
    old = Keyring.open(keys).active()[0]
    for path in keys.iterdir():  # the label key is gone; the rotation key, backed up, is all that is left
        if path.name != ROTATION_KEY_FILE:
            path.unlink()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    assert "labeler keys rotate" in refused(labeler(tmp_path, "worker", "--drain"))
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    ok("keys", "rotate")
    new = Keyring.open(keys).active()[0]
    assert new.id != old.id and plc.state(did).verification_methods == {"atproto_label": new.did_key}
    started = labeler(tmp_path, "worker", "--drain", "--workers", "1")
    assert started.returncode == 0, started.stderr
    assert "jobs done: none" in started.stderr
    assert Keyring.open(keys).active_id == new.id  # it signs with the published key, and made none of its own


async def test_the_embedded_default_makes_and_serves_its_key_on_first_start(tmp_path: Path) -> None:
    """`make run` on a fresh machine: no DID set, so ours is the did:web of the public URL, served from the key
    `serve` makes on its first start."""
    database = f"sqlite+aiosqlite:///{tmp_path / 'labeler.db'}"
    process = ServeProcess("default", database, tmp_path, password="x", did=None)
    try:
        await process.start()
        active = Keyring.open(tmp_path / "keys").active()[0]
        async with httpx.AsyncClient(base_url=process.url) as http:
            document = (await http.get("/.well-known/did.json")).json()
    finally:
        await process.stop()
    assert document["id"] == f"did:web:localhost%3A{process.port}"
    assert [m["publicKeyMultibase"] for m in document["verificationMethod"]] == [active.multikey]
    assert f"generated a development label key {active.id}" in process.log_tail()


def test_a_did_plc_with_its_key_starts_as_before(tmp_path: Path) -> None:
    """The key the operator made (and published) is used as it is; nothing new is generated."""
    key = Keyring.open(tmp_path / "keys").generate()
    started = labeler(tmp_path, "worker", "--drain", "--workers", "1", LABELER_DID=PLC_DID)
    assert started.returncode == 0, started.stderr
    assert [k.id for k in Keyring.open(tmp_path / "keys").all_keys()] == [key.id]
