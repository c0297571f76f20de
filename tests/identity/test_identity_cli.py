"""The identity commands through the CLI, without the network beyond loopback stand-ins: `init`, `did`,
`declare --dry-run`, `keys generate --purpose rotation`, `keys rotate` (did:plc via an in-memory PLC that checks
operations, and did:web served by the labeler itself) and `keys resign`."""

from __future__ import annotations

import json
import os
import socket
import stat
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from atproto import models
from atproto_client.models.utils import get_or_create
from click.testing import CliRunner
from support.memory_plc import MemoryPlc, running_memory_plc
from support.server import RunningServer, serve_in_thread

from labeler.cli import cli
from labeler.cli._config_file import save_did
from labeler.config import load_settings
from labeler.keys import Keyring
from labeler.protocol.label import Label
from labeler.xrpc.app import create_app


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("LABELER_"):
            monkeypatch.delenv(name)
    return CliRunner()


@pytest.fixture(scope="module")
def memory_plc() -> Iterator[tuple[MemoryPlc, RunningServer]]:
    with running_memory_plc() as running:
        yield running


def ok(runner: CliRunner, *args: str, input: str | None = None) -> str:
    result = runner.invoke(cli, list(args), input=input, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def fails(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(cli, list(args))
    assert result.exit_code == 1 and "Error:" in result.output and "Traceback" not in result.output, result.output
    return result.output


def init(runner: CliRunner, *extra: str) -> str:
    return ok(runner, "init", "--no-input", "--database-url", "sqlite+aiosqlite:///labeler.db", *extra)


def test_init_non_interactive(runner: CliRunner, tmp_path: Path) -> None:
    out = init(runner, "--did-method", "web", "--public-url", "https://labeler.example.com", "--label-value", "spam")
    assert "wrote labeler.toml" in out and "generated label key" in out and "Next:" in out
    config = tomllib.loads((tmp_path / "labeler.toml").read_text())
    assert config["did"] == "did:web:labeler.example.com" and config["declaration"]["labels"][0]["identifier"] == "spam"
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert Keyring.open(tmp_path / "keys").active_id is not None
    assert "exists; pass --force" in fails(runner, "init", "--no-input")
    before = Keyring.open(tmp_path / "keys").active_id
    init(runner, "--force", "--did-method", "plc")
    assert "did" not in tomllib.loads((tmp_path / "labeler.toml").read_text())  # a did:plc comes later
    assert Keyring.open(tmp_path / "keys").active_id == before  # the existing key is kept


def test_init_interactive(runner: CliRunner, tmp_path: Path) -> None:
    answers = "plc\nhttps://labels.example.org\n\nmykeys\n\nnsfw-art\nNSFW art\nArt that is not safe for work.\n"
    out = ok(runner, "init", input=answers)
    assert "labeler did create" in out and "labeler did link-pds" in out
    settings = load_settings(env={"LABELER_CONFIG": str(tmp_path / "labeler.toml")})
    assert settings.public_url == "https://labels.example.org" and settings.keys_dir == Path("mykeys")
    record = json.loads(ok(runner, "declare", "--dry-run"))
    assert record["policies"]["labelValues"] == ["nsfw-art"]
    assert record["policies"]["labelValueDefinitions"][0]["locales"][0]["name"] == "NSFW art"
    assert get_or_create(record, models.AppBskyLabelerService.Record, strict=True) is not None


def test_init_refuses_a_config_that_would_not_load(runner: CliRunner, tmp_path: Path) -> None:
    assert "^[a-z-]+$" in fails(runner, "init", "--no-input", "--label-value", "Bad Value")
    assert "no path" in fails(runner, "init", "--no-input", "--public-url", "https://example.com/labeler")
    assert not (tmp_path / "labeler.toml").exists() and not list(tmp_path.glob(".labeler-*"))


def test_declare_rejects_an_invalid_declaration(runner: CliRunner, tmp_path: Path) -> None:
    init(runner)
    config = tmp_path / "labeler.toml"
    config.write_text(config.read_text().replace('severity = "alert"', 'severity = "loud"'))
    assert "severity must be one of" in fails(runner, "declare", "--dry-run")


def test_save_did_replaces_one_line(tmp_path: Path) -> None:
    path = tmp_path / "labeler.toml"
    assert not save_did(path, "did:plc:x")
    path.write_text('# did = "did:plc:…"  (set later)\nport = 1\n\n[declaration]\ndid = "not this one"\n')
    assert save_did(path, "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa")
    assert save_did(path, "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb")
    data = tomllib.loads(path.read_text())
    assert data["did"] == "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb" and data["declaration"]["did"] == "not this one"
    path.write_text("[declaration]\n")
    save_did(path, "did:plc:cccccccccccccccccccccccc")
    assert tomllib.loads(path.read_text())["did"] == "did:plc:cccccccccccccccccccccccc"


def test_did_plc_create_update_and_rotate(
    runner: CliRunner, tmp_path: Path, memory_plc: tuple[MemoryPlc, RunningServer]
) -> None:
    plc, server = memory_plc
    init(runner, "--did-method", "plc", "--plc-url", server.url, "--public-url", "https://labeler.example.com")
    ok(runner, "keys", "generate", "--purpose", "rotation")
    assert "already exists" in fails(runner, "keys", "generate", "--purpose", "rotation")
    ok(runner, "did", "create")
    did = load_settings().did
    first = Keyring.open(tmp_path / "keys").active()[0]
    assert plc.state(did).verification_methods == {"atproto_label": first.did_key}
    shown = json.loads(ok(runner, "did", "show"))
    assert shown["id"] == did and shown["service"][0]["serviceEndpoint"] == "https://labeler.example.com"

    ok(runner, "did", "update", "--handle", "labels.example.com")
    assert plc.state(did).also_known_as == ("at://labels.example.com",)
    out = ok(runner, "keys", "rotate")
    second = Keyring.open(tmp_path / "keys").active()[0]
    assert f"{first.id} (retired)" in out and second.id in out
    assert plc.state(did).verification_methods == {"atproto_label": second.did_key}
    assert plc.state(did).also_known_as == ("at://labels.example.com",)  # the rest is kept

    plc.refuse = "Invalid operation"
    try:
        out = fails(runner, "keys", "rotate")
    finally:
        plc.refuse = None
    assert "Invalid operation" in out and "NOT activated" in out
    ring = Keyring.open(tmp_path / "keys")
    pending = [k for k in ring.all_keys() if k.id not in (first.id, second.id)]
    assert ring.active_id == second.id and len(pending) == 1 and pending[0].retired_at is None
    ok(runner, "keys", "rotate", "--key", pending[0].id)
    assert Keyring.open(tmp_path / "keys").active_id == pending[0].id


def test_did_web_rotation_is_confirmed_from_the_served_document(runner: CliRunner, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    init(runner, "--did-method", "web", "--public-url", f"http://localhost:{port}")
    os.environ["LABELER_ALLOW_INSECURE_DID_WEB"] = "true"  # did:web on localhost:PORT (removed by the fixture)
    os.environ["LABELER_WORKERS"] = "0"
    settings = load_settings()
    first = Keyring.open(settings.keys_dir).active()[0]
    with serve_in_thread(create_app(settings), port=port, lifespan="on"):
        assert json.loads(ok(runner, "did", "show"))["verificationMethod"][0]["publicKeyMultibase"] == first.multikey
        out = ok(runner, "keys", "rotate", "--confirm-timeout", "5")
    second = Keyring.open(settings.keys_dir).active()[0]
    assert second.id != first.id and f"{first.id} (retired)" in out


def test_keys_resign_cli(runner: CliRunner, tmp_path: Path) -> None:
    os.environ["LABELER_DID"] = "did:plc:clitestclitestclitestcli"
    init(runner)
    for i in range(30):
        ok(runner, "label", "add", f"did:plc:subject{i:02d}", "csam-hash-match")
    ok(runner, "keys", "generate", "--activate", "--force")  # a made-up DID: nothing can name the key
    new = Keyring.open(tmp_path / "keys").active()[0]
    out = ok(runner, "keys", "resign", "--batch", "7")
    assert "re-signed 30 labels" in out
    assert "re-signed 0 labels" in ok(runner, "keys", "resign")
    rows = json.loads(ok(runner, "label", "list", "--json"))
    assert len(rows) == 30
    assert all(Label.from_json({k: v for k, v in r.items() if k != "seq"}).verify(new.did_key) for r in rows)


def test_label_reissue_cli(runner: CliRunner) -> None:
    former, current = "did:plc:formerformerformerformer", "did:plc:currentcurrentcurrentcur"
    os.environ["LABELER_DID"] = former  # removed by the fixture
    init(runner)
    for i in range(3):
        ok(runner, "label", "add", f"did:plc:subject{i:02d}", "spam")
    ok(runner, "label", "negate", "did:plc:subject02", "spam")
    os.environ["LABELER_DID"] = current
    assert "is the current DID" in fails(runner, "label", "reissue", "--from", current)
    assert "would re-issue 2 labels" in ok(runner, "label", "reissue", "--from", former, "--dry-run")
    out = ok(runner, "label", "reissue", "--from", former)
    assert f"re-issued 2 labels of {former} as {current}; 0 already carried, 1 negations" in out
    assert "re-issued 0 labels" in ok(runner, "label", "reissue", "--from", former)
    rows = json.loads(ok(runner, "label", "list", "--json"))
    assert sorted((r["src"], r["uri"], r.get("neg", False)) for r in rows) == [
        (current, "did:plc:subject00", False),
        (current, "did:plc:subject01", False),
        (former, "did:plc:subject00", False),
        (former, "did:plc:subject01", False),
        (former, "did:plc:subject02", True),
    ]
