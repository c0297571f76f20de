"""`labeler bank …` for embedded banks (imports with bad rows, list, remove) and as an HMA proxy; embedded
banks changed by another process reach a running matcher."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from labeler.cli import cli
from labeler.config import Settings
from labeler.pipeline.bank_import import parse_text
from labeler.pipeline.banks import BankStore, EntryInput
from labeler.service import Labeler

from .conftest import RunningStandin
from .corpus import random_hashes
from .harness import eventually

H = random_hashes(6, seed=7)


@pytest.fixture
def runner(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in list(os.environ):
        if name.startswith("LABELER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABELER_DATABASE_URL", database_url)
    monkeypatch.setenv("LABELER_KEYS_DIR", str(tmp_path / "keys"))
    return CliRunner()


def invoke(runner: CliRunner, *args: str, code: int = 0) -> str:
    result = runner.invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def test_import_reports_bad_rows_with_line_numbers(runner: CliRunner, tmp_path: Path) -> None:
    csv_file = tmp_path / "hashes.csv"
    csv_file.write_text(
        "note,pdq,external_id\n"
        f"first,{H[0]},case-1\n"
        f"second,{H[1].upper()},case-2\n"  # uppercase is accepted and stored lowercase
        "bad,not-a-hash,case-3\n"
        "\n"
        f"short,{H[2][:-1]},case-4\n"
        f"dup,{H[0]},case-1-again\n"
    )
    invoke(runner, "bank", "create", "NCMEC_TEST", "--note", "from NCMEC")
    out = invoke(runner, "bank", "import", "NCMEC_TEST", str(csv_file), code=1)
    assert f"{csv_file}:4: invalid PDQ hash" in out and f"{csv_file}:6: invalid PDQ hash" in out
    assert "imported 2 entries into NCMEC_TEST (1 already present, 2 bad rows)" in out
    text_file = tmp_path / "more.txt"
    text_file.write_text(f"# comment\n{H[3]} ext-9 a note with spaces\n{H[4]}\n")
    assert "imported 2 entries" in invoke(runner, "bank", "import", "OTHER", str(text_file), "--create")
    banks = json.loads(invoke(runner, "bank", "list", "--json"))
    assert [(b["name"], b["entries"], b["note"]) for b in banks] == [
        ("NCMEC_TEST", 2, "from NCMEC"),
        ("OTHER", 2, None),
    ]
    assert "created" not in invoke(runner, "bank", "remove", "NCMEC_TEST", "--entry", "1")
    assert "removed bank OTHER (2 entries)" in invoke(runner, "bank", "remove", "OTHER", "--yes")
    assert [b["entries"] for b in json.loads(invoke(runner, "bank", "list", "--json"))] == [1]
    assert "already exists" in invoke(runner, "bank", "create", "NCMEC_TEST", code=1)
    assert "UPPER_WITH_UNDERSCORE" in invoke(runner, "bank", "create", "lower", code=1)
    assert "no bank named" in invoke(runner, "bank", "import", "MISSING", str(text_file), code=1)


def test_tsv_and_header_detection() -> None:
    parsed = parse_text(f"{H[0]}\tid-1\tnote one\n{H[1]}\n", "tsv")
    assert [(n, e.external_id, e.note) for n, e in parsed.entries] == [(1, "id-1", "note one"), (2, None, None)]
    assert parse_text("id,note\n1,x\n", "csv").errors == [(1, "header has no hash column")]


def test_bank_commands_proxy_to_hma(
    runner: CliRunner, tmp_path: Path, hma_standin: RunningStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABELER_MATCHER", "hma")
    monkeypatch.setenv("LABELER_HMA_URL", hma_standin.url)
    hashes = tmp_path / "h.txt"
    hashes.write_text(f"{H[0]} case-1 seen twice\n{H[1]}\nnope\n")
    invoke(runner, "bank", "create", "HMA_BANK")
    assert "Bank already exists" in invoke(runner, "bank", "create", "HMA_BANK", code=1)
    out = invoke(runner, "bank", "import", "HMA_BANK", str(hashes), code=1)
    assert f"{hashes}:3: invalid PDQ hash" in out and "imported 2 entries" in out
    assert json.loads(invoke(runner, "bank", "list", "--json")) == [{"name": "HMA_BANK", "matching_enabled_ratio": 1.0}]
    invoke(runner, "bank", "remove", "HMA_BANK", "--yes")
    assert json.loads(invoke(runner, "bank", "list", "--json")) == []


async def test_a_running_matcher_picks_up_bank_changes_made_elsewhere(make_settings: object) -> None:
    settings: Settings = make_settings(extra={"pipeline": {"bank_poll_seconds": 0.1}})  # type: ignore[operator]
    labeler = Labeler(settings)
    await labeler.start()
    other = Labeler(settings, with_hub=False)  # stands in for `labeler bank …` in another process
    try:
        elsewhere = BankStore(other.engine)
        await elsewhere.create("LIVE")
        await elsewhere.add_entries("LIVE", [EntryInput(H[0], "a")])
        assert [m.external_id for m in await labeler.pipeline.matcher.lookup(H[0])] == ["a"]  # first load
        await elsewhere.add_entries("LIVE", [EntryInput(H[1], "b")])

        async def added() -> bool:
            return len(await labeler.pipeline.matcher.lookup(H[1])) == 1

        await eventually(added, within=5, what="an added entry")
        await elsewhere.drop("LIVE")

        async def dropped() -> bool:
            return await labeler.pipeline.matcher.lookup(H[0]) == []

        await eventually(dropped, within=5, what="a dropped bank")
    finally:
        await other.aclose()
        await labeler.aclose()
