"""The `labeler` CLI against real SQLite files: keys, labels, db. Exit codes asserted with output as the message."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from labeler.cli import cli
from labeler.protocol.label import Label
from labeler.store.migrate import head_revision


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("LABELER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LABELER_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("LABELER_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("LABELER_DID", "did:plc:clitestclitestclitest1")
    return CliRunner()


def ok(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_keys_generate_list_show(runner: CliRunner, tmp_path: Path) -> None:
    out = ok(runner, "keys", "generate")
    assert "(active)" in out and "did:key:zQ3s" in out
    ok(runner, "keys", "generate", "--curve", "p256")
    rows = json.loads(ok(runner, "keys", "list", "--json"))
    assert [r["curve"] for r in rows] == ["k256", "p256"]
    assert [r["active"] for r in rows] == [True, False]
    shown = json.loads(ok(runner, "keys", "show", "--json"))
    assert shown["multikey"].startswith("zQ3s") and shown["did_key"] == "did:key:" + shown["multikey"]
    keys_dir = tmp_path / "keys"
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    for pem in keys_dir.glob("*.pem"):
        assert stat.S_IMODE(pem.stat().st_mode) == 0o600
        assert "PRIVATE KEY" not in out and pem.read_text() not in out
    result = runner.invoke(cli, ["keys", "show", "nope"])
    assert result.exit_code != 0 and "no key" in result.output


def test_label_add_negate_list(runner: CliRunner) -> None:
    ok(runner, "keys", "generate")
    out = ok(runner, "label", "add", "at://did:plc:alice/app.bsky.feed.post/3k", "spam", "--reason", "test")
    assert out.startswith("seq=")
    ok(runner, "label", "add", "did:plc:bob", "porn", "--hours", "2")
    ok(runner, "label", "negate", "at://did:plc:alice/app.bsky.feed.post/3k", "spam")
    rows = json.loads(ok(runner, "label", "list", "--json"))
    assert [(r["uri"], r["val"], r.get("neg", False)) for r in rows] == [
        ("did:plc:bob", "porn", False),
        ("at://did:plc:alice/app.bsky.feed.post/3k", "spam", True),
    ]
    assert rows[0]["seq"] < rows[1]["seq"] and "exp" in rows[0]
    for row in rows:
        Label.from_json({k: v for k, v in row.items() if k != "seq"}).validate()
    only_bob = json.loads(ok(runner, "label", "list", "--json", "--uri", "did:plc:b*"))
    assert [r["uri"] for r in only_bob] == ["did:plc:bob"]


def test_bad_label_input_is_a_clean_error(runner: CliRunner) -> None:
    ok(runner, "keys", "generate")
    for args in (["label", "add", "did:plc:bob", "Bad Value"], ["label", "add", "https://x", "spam"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 1 and "Error:" in result.output, result.output
        assert "Traceback" not in result.output


def test_label_add_needs_a_key(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["label", "add", "did:plc:bob", "spam"])
    assert result.exit_code == 1 and "labeler keys generate" in result.output


def test_db_upgrade_and_current(runner: CliRunner) -> None:
    head = head_revision()
    assert head is not None
    assert f"revision {head}" in ok(runner, "db", "upgrade")
    out = ok(runner, "db", "current")
    assert f"current: {head}" in out and f"head:    {head}" in out


def test_bad_config_is_reported(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELER_PUBLIC_URL", "ftp://nope/path")
    result = runner.invoke(cli, ["label", "list"])
    assert result.exit_code == 1 and "LABELER_PUBLIC_URL" in result.output
