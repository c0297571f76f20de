"""A newcomer's CLI rough edges (issue 16): pointless negations refused, empty listings that say so, subject errors
that name both forms, `declare` that fails before asking for a password, `doctor` that leaves no database behind."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from support.server import serve_in_thread

from labeler.cli import cli
from labeler.config import load_settings
from labeler.xrpc.app import create_app

POST = "at://did:plc:alice/app.bsky.feed.post/3k"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LABELER_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("LABELER_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("LABELER_DID", "did:plc:clitestclitestclitest1")
    return CliRunner()


def invoke(runner: CliRunner, *args: str) -> Result:
    result = runner.invoke(cli, list(args))
    assert "Traceback" not in result.output, result.output
    return result


def ok(runner: CliRunner, *args: str) -> str:
    result = invoke(runner, *args)
    assert result.exit_code == 0, result.output
    return result.output


def labels(runner: CliRunner) -> list[tuple[str, str, bool]]:
    return [(r["uri"], r["val"], r.get("neg", False)) for r in json.loads(ok(runner, "label", "list", "--json"))]


def test_negating_a_label_that_is_not_there_needs_force(runner: CliRunner) -> None:
    ok(runner, "keys", "generate")
    ok(runner, "label", "add", POST, "spam")
    for args in (
        ["did:plc:alice", "spam"],
        [POST, "spma"],
        [POST, "spam", "--cid", "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"],
    ):
        result = invoke(runner, "label", "negate", *args)
        assert result.exit_code == 1 and "to negate" in result.output and "--force" in result.output, result.output
    assert labels(runner) == [(POST, "spam", False)]  # nothing was published
    out = ok(runner, "label", "negate", "did:plc:alice", "spam", "--force")
    assert "(negation)" in out
    assert labels(runner) == [(POST, "spam", False), ("did:plc:alice", "spam", True)]


def test_negating_twice_publishes_one_negation(runner: CliRunner) -> None:
    ok(runner, "keys", "generate")
    ok(runner, "label", "add", POST, "spam")
    ok(runner, "label", "negate", POST, "spam")
    again = invoke(runner, "label", "negate", POST, "spam")
    assert again.exit_code == 1 and "already negated" in again.output and "--force" in again.output
    assert labels(runner) == [(POST, "spam", True)]
    seq = json.loads(ok(runner, "label", "list", "--json"))[0]["seq"]
    ok(runner, "label", "negate", POST, "spam", "--force")
    assert json.loads(ok(runner, "label", "list", "--json"))[0]["seq"] > seq


def test_empty_listings_say_so(runner: CliRunner) -> None:
    ok(runner, "keys", "generate")
    assert ok(runner, "label", "list") == "no labels\n"
    assert ok(runner, "label", "list", "--uri", "did:plc:b*") == "no labels matching did:plc:b*\n"
    assert ok(runner, "review", "list") == "no pending review items\n"
    assert ok(runner, "review", "list", "--status", "all") == "no review items\n"
    assert ok(runner, "reports", "list") == "no open reports\n"
    assert ok(runner, "actions", "list") == "no actions\n"
    assert ok(runner, "actions", "list", "--state", "failed") == "no actions match\n"
    assert ok(runner, "actions", "list", "--kind", "altitude") == "no actions match\n"  # every kind can be asked for
    assert ok(runner, "entries", "list").startswith("no entries held back")
    assert ok(runner, "bank", "list").startswith("no banks")
    assert json.loads(ok(runner, "label", "list", "--json")) == []  # JSON stays a list


def test_a_bad_subject_error_names_both_forms(runner: CliRunner) -> None:
    ok(runner, "keys", "generate")
    result = invoke(runner, "label", "add", "https://bsky.app/profile/alice", "spam")
    assert result.exit_code == 1 and "at:// URI" in result.output and "DID" in result.output, result.output


def test_doctor_leaves_no_database_in_a_folder_without_one(runner: CliRunner, tmp_path: Path) -> None:
    result = invoke(runner, "doctor")
    assert result.exit_code == 1 and "no database at" in result.output, result.output
    assert not (tmp_path / "cli.db").exists()


def test_declare_on_our_own_did_web_fails_before_asking_for_a_password(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.delenv("LABELER_DID")  # the did:web of the public URL, served by the labeler below
    monkeypatch.setenv("LABELER_PUBLIC_URL", f"http://localhost:{port}")
    monkeypatch.setenv("LABELER_ALLOW_INSECURE_DID_WEB", "true")
    monkeypatch.setenv("LABELER_WORKERS", "0")
    ok(runner, "keys", "generate")
    with serve_in_thread(create_app(load_settings()), port=port, lifespan="on"):
        result = runner.invoke(cli, ["declare"], input="secret\n")
    assert result.exit_code == 1 and "names no PDS" in result.output and "link-pds" in result.output, result.output
    assert "password" not in result.output.lower()


@pytest.mark.parametrize(
    ("public_url", "port"),
    [("http://labels.test:2590", 2590), ("https://labels.test", 8080), ("https://labels.test:8443", 8080)],
)
def test_serve_listens_where_init_says(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, public_url: str, port: int
) -> None:
    """A plain-http public URL is served by `labeler serve` itself, on its port; behind HTTPS the proxy forwards."""
    for name in ("LABELER_DATABASE_URL", "LABELER_KEYS_DIR", "LABELER_DID"):
        monkeypatch.delenv(name)
    ok(runner, "init", "--no-input", "--did-method", "web", "--public-url", public_url)
    assert load_settings().port == port
