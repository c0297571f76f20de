"""`labeler reports list|show|resolve` against a real database (SQLite and PostgreSQL), audited as actor "cli"."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from click.testing import CliRunner
from report_helpers import APPEAL, VIOLATION

from labeler.cli import cli
from labeler.config import Settings
from labeler.reports import ReportInput, Subject
from labeler.service import Labeler

ALICE = "did:plc:aliceclialiceclialicecl"
BOB = "did:plc:bobclibobclibobclibobcl"
POST = Subject(
    "record", f"at://{BOB}/app.bsky.feed.post/3k", BOB, "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
)


@pytest.fixture
def runner(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LABELER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LABELER_KEYS_DIR", str(settings.keys_dir))
    monkeypatch.setenv("LABELER_DID", settings.did)
    monkeypatch.setenv("LABELER_PLC_URL", settings.plc_url)
    monkeypatch.delenv("LABELER_CONFIG", raising=False)
    return CliRunner()


@pytest.fixture
def seeded(settings: Settings) -> list[int]:
    async def seed() -> list[int]:
        service = Labeler(settings, with_hub=False)
        await service.start(create_dev_key=False)
        try:
            store = service.reports.store
            first = await store.add(ReportInput(VIOLATION, POST, reason="bad image"), ALICE)
            second = await store.add(ReportInput(VIOLATION, POST), "did:plc:carolclicarolclicarolcl")
            appeal = await store.add(ReportInput(APPEAL, POST, reason="it is fine"), BOB)
            return [first.id, second.id, appeal.id]
        finally:
            await service.aclose()

    return asyncio.run(seed())


def ok(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_list_show_resolve(runner: CliRunner, seeded: list[int]) -> None:
    first, second, appeal = seeded
    out = ok(runner, "reports", "list")
    assert out.count("[open]") == 3 and "bad image" in out and f"#{first} " in out
    rows = json.loads(ok(runner, "reports", "list", "--json", "--newest-first"))
    assert [r["id"] for r in rows] == [appeal, second, first]
    assert rows[-1]["subject"]["uri"] == POST.uri and rows[-1]["reportedBy"] == ALICE

    shown = json.loads(ok(runner, "reports", "show", str(first), "--json"))
    assert shown["report"]["id"] == first and shown["subjectStatus"]["reportCount"] == 3
    assert [e["event"]["$type"].rsplit("#")[-1] for e in shown["events"]] == ["modEventReport"] * 3

    out = ok(runner, "reports", "resolve", str(first), "--as", "actioned", "--note", "labelled by hand")
    assert out.startswith(f"actioned: #{first} ")
    result = runner.invoke(cli, ["reports", "resolve", str(first)])
    assert result.exit_code != 0 and "already actioned" in result.output

    outcome = json.loads(ok(runner, "reports", "resolve", str(second), "--subject-wide", "--json"))
    assert outcome["resolved"] == [second]  # the appeal is not swept up with the reports
    assert outcome["event"]["event"]["$type"].endswith("#modEventAcknowledge")
    out = ok(runner, "reports", "resolve", str(appeal), "--by", BOB.replace("bob", "mod"))
    assert out.startswith(f"dismissed: #{appeal} ")

    rows = json.loads(ok(runner, "reports", "list", "--status", "all", "--json"))
    assert [(r["status"], r["resolvedBy"]) for r in rows] == [
        ("actioned", "cli"),
        ("dismissed", "cli"),
        ("dismissed", "cli"),
    ]
    assert rows[0]["note"] == "labelled by hand"
    assert ok(runner, "reports", "list") == "no open reports\n"
    shown = json.loads(ok(runner, "reports", "show", str(first), "--json"))
    assert shown["subjectStatus"]["reviewState"].endswith("#reviewClosed")
    assert [e["actor"] for e in shown["events"]][-3:] == ["cli", "cli", "cli"]
    assert "labelled by hand" in ok(runner, "reports", "show", str(first))


def test_errors(runner: CliRunner, seeded: Any) -> None:
    for args in (["show", "999"], ["resolve", "999"], ["list", "--subject", "nope"], ["resolve", "1", "--by", "x"]):
        result = runner.invoke(cli, ["reports", *args])
        assert result.exit_code != 0 and "Traceback" not in result.output, (args, result.output)
