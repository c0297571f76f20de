"""`labeler bank …` on both matchers with the same answers (imports with bad rows, re-imports, list, remove);
HMA imports resume after a kill without duplicates; embedded banks changed by another process reach a running
matcher."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from labeler.cli import cli
from labeler.config import Settings
from labeler.pipeline import bank_sync
from labeler.pipeline.bank_import import parse_text
from labeler.pipeline.banks import BankStore, EntryInput
from labeler.pipeline.hma_banks import CHUNK
from labeler.pipeline.match.base import Match
from labeler.pipeline.match.hma import HmaMatcher
from labeler.service import Labeler
from labeler.store.engine import create_engine
from labeler.store.pipeline_schema import bank_changes

from .conftest import RunningStandin
from .corpus import random_hashes
from .harness import eventually
from .hma_standin import HmaStandin, serve

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


@pytest.fixture(params=["embedded", "hma"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[HmaStandin | None]:
    """Which matcher the bank commands manage: embedded banks, or HMA's (the stand-in) with `matcher = "hma"`."""
    if request.param == "embedded":
        yield None
        return
    standin = HmaStandin()
    with serve(standin) as url:
        monkeypatch.setenv("LABELER_MATCHER", "hma")
        monkeypatch.setenv("LABELER_HMA_URL", url)
        yield standin


async def _drops(database_url: str) -> list[tuple[str, str]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            query = sa.select(bank_changes.c.bank, bank_changes.c.actor).where(bank_changes.c.op == "drop")
            return [(row.bank, row.actor) for row in await conn.execute(query)]
    finally:
        await engine.dispose()


def _entry_id(backend: HmaStandin | None, bank: str, pdq: str) -> str:
    """The id `bank remove --entry` takes: our entry id, or HMA's content id."""
    if backend is None:
        return "1"
    return str(next(cid for cid, _, signals, _ in backend.contents(bank) if signals.get("pdq") == pdq))


def test_bank_commands_answer_alike_on_both_matchers(
    runner: CliRunner, tmp_path: Path, backend: HmaStandin | None, database_url: str
) -> None:
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
    assert "created pdq bank NCMEC_TEST" in invoke(runner, "bank", "create", "NCMEC_TEST", "--note", "from NCMEC")
    out = invoke(runner, "bank", "import", "NCMEC_TEST", str(csv_file), code=1)
    assert f"{csv_file}:4: invalid PDQ hash" in out and f"{csv_file}:6: invalid PDQ hash" in out
    assert "imported 2 entries into NCMEC_TEST (1 already present, 0 failed, 2 bad rows)" in out
    out = invoke(runner, "bank", "import", "NCMEC_TEST", str(csv_file), code=1)  # idempotent
    assert "imported 0 entries into NCMEC_TEST (3 already present, 0 failed, 2 bad rows)" in out
    text_file = tmp_path / "more.txt"
    text_file.write_text(f"# comment\n{H[3]} ext-9 a note with spaces\n{H[4]}\n")
    assert "imported 2 entries" in invoke(runner, "bank", "import", "OTHER", str(text_file), "--create")
    banks = json.loads(invoke(runner, "bank", "list", "--json"))
    assert [(b["name"], b["signal_type"], b["note"]) for b in banks] == [
        ("NCMEC_TEST", "pdq", "from NCMEC"),
        ("OTHER", "pdq", None),
    ]
    if backend is None:
        assert [b["entries"] for b in banks] == [2, 2]
    else:
        assert [len(backend.contents(b)) for b in ("NCMEC_TEST", "OTHER")] == [2, 2]  # no duplicates in HMA
    entry = _entry_id(backend, "NCMEC_TEST", H[0])
    assert f"removed entry {entry} from NCMEC_TEST" in invoke(runner, "bank", "remove", "NCMEC_TEST", "--entry", entry)
    assert "has no entry 999" in invoke(runner, "bank", "remove", "NCMEC_TEST", "--entry", "999", code=1)
    assert "removed bank OTHER" in invoke(runner, "bank", "remove", "OTHER", "--yes")
    if backend is None:  # the embedded bank change log keeps who dropped a bank
        assert asyncio.run(_drops(database_url)) == [("OTHER", "cli")]
    assert "no bank named 'NO_SUCH_BANK'" in invoke(runner, "bank", "remove", "NO_SUCH_BANK", "--yes", code=1)
    assert [b["name"] for b in json.loads(invoke(runner, "bank", "list", "--json"))] == ["NCMEC_TEST"]
    assert "already exists" in invoke(runner, "bank", "create", "NCMEC_TEST", code=1)
    assert "UPPER_WITH_UNDERSCORE" in invoke(runner, "bank", "create", "lower", code=1)
    assert "no bank named" in invoke(runner, "bank", "import", "MISSING", str(text_file), code=1)
    assert "holds pdq hashes, not md5" in invoke(
        runner, "bank", "import", "NCMEC_TEST", str(text_file), "--signal", "md5", code=1
    )
    md5_file = tmp_path / "videos.txt"
    md5_file.write_text("9e107d9d372bb6826bd81d3542a419d6 video-1\n")
    assert "created md5 bank VIDEOS" in invoke(runner, "bank", "create", "VIDEOS", "--signal", "md5")
    assert "imported 1 entries into VIDEOS" in invoke(runner, "bank", "import", "VIDEOS", str(md5_file))


def test_hma_lookups_return_the_imported_external_id(
    runner: CliRunner, tmp_path: Path, hma_standin: RunningStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABELER_MATCHER", "hma")
    monkeypatch.setenv("LABELER_HMA_URL", hma_standin.url)
    hashes = tmp_path / "h.txt"
    hashes.write_text(f"{H[0]} case-1 seen twice\n")
    invoke(runner, "bank", "import", "HMA_BANK", str(hashes), "--create")

    async def lookup() -> list[Match]:
        matcher = HmaMatcher(hma_standin.url)
        try:
            return await matcher.lookup(H[0])
        finally:
            await matcher.aclose()

    [match] = asyncio.run(lookup())
    assert (match.bank, match.external_id, match.note) == ("HMA_BANK", "case-1", "seen twice")
    assert "HMA banks hold pdq and md5" in invoke(runner, "bank", "create", "SHA", "--signal", "sha256", code=1)


def _import_in_child(args: list[str]) -> None:
    """A forked process running the command (it has everything imported already: it starts at once)."""
    cli.main(args, standalone_mode=True)


def test_an_hma_import_killed_midway_finishes_on_a_rerun_without_duplicates(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed with SIGKILL while adds are in flight, then run again: every hash once in HMA, and counted."""
    hashes = random_hashes(120, seed=8)
    source = tmp_path / "list.txt"
    source.write_text("".join(f"{h} ext-{i}\n" for i, h in enumerate(hashes)))
    standin = HmaStandin()
    with serve(standin) as url:
        monkeypatch.setenv("LABELER_MATCHER", "hma")
        monkeypatch.setenv("LABELER_HMA_URL", url)
        args = ["bank", "import", "BIG", str(source), "--create"]
        standin.delay = 0.02  # every request takes a while, so the kill lands with adds in flight
        first = multiprocessing.get_context("fork").Process(target=_import_in_child, args=(args,), daemon=True)
        first.start()
        try:
            deadline = time.monotonic() + 60
            while len(standin.contents("BIG")) < 40 and first.is_alive() and time.monotonic() < deadline:
                time.sleep(0.005)
        finally:
            first.kill()
            first.join()
        assert len(standin.contents("BIG")) >= 40  # killed with adds landed (an add in flight may still land)
        standin.delay = 0
        out = invoke(runner, *args, "--concurrency", "4")
        values = [signals["pdq"] for _, _, signals, _ in standin.contents("BIG")]
        assert sorted(values) == sorted(hashes)  # every hash exactly once
        landed = int(out.split("imported ")[1].split(" ")[0])
        present = int(out.split("(")[1].split(" already present")[0])
        assert present < CHUNK and landed + present == len(hashes), out  # killed in the first chunk; none twice
        assert f"({present} already present, {present} found landed by an interrupted import" in out, out
        out = invoke(runner, *args)
        assert f"imported 0 entries into BIG ({len(hashes)} already present, 0 failed" in out
        # A bank deleted and made again in HMA itself: our records no longer hold, and everything goes in again.
        standin.delete_bank("BIG")
        standin.create_bank("BIG")
        assert f"imported {len(hashes)} entries into BIG (0 already present" in invoke(runner, *args)
        assert len(standin.contents("BIG")) == len(hashes)


def test_tsv_and_header_detection() -> None:
    parsed = parse_text(f"{H[0]}\tid-1\tnote one\n{H[1]}\n", "tsv")
    assert [(n, e.external_id, e.note) for n, e in parsed.entries] == [(1, "id-1", "note one"), (2, None, None)]
    assert parse_text("id,note\n1,x\n", "csv").errors == [(1, "header has no hash column")]


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
        await elsewhere.drop("LIVE", actor="cli")

        async def dropped() -> bool:
            return await labeler.pipeline.matcher.lookup(H[0]) == []

        await eventually(dropped, within=5, what="a dropped bank")
    finally:
        await other.aclose()
        await labeler.aclose()


async def test_the_first_load_streams_the_banks_in_batches(
    make_settings: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings: Settings = make_settings()  # type: ignore[operator]
    labeler = Labeler(settings, with_hub=False)
    await labeler.start()
    try:
        store = BankStore(labeler.engine)
        await store.create("ONE")
        await store.create("TWO")
        await store.add_entries("ONE", [EntryInput(h, f"x{i}") for i, h in enumerate(H[:3])])
        await store.add_entries("TWO", [EntryInput(H[3], None, "a note")])
        batches = [batch async for batch in store.index_row_batches(size=2)]
        assert [len(batch) for batch in batches] == [2, 2]
        assert [row for batch in batches for row in batch] == await store.index_rows()
        monkeypatch.setattr(bank_sync, "LOAD_BATCH", 1)
        synced = bank_sync.SyncedBanks(store)
        try:
            assert [m.external_id for m in await synced.lookup(H[2])] == ["x2"]
            assert [(m.bank, m.note) for m in await synced.lookup(H[3])] == [("TWO", "a note")]
        finally:
            await synced.aclose()
    finally:
        await labeler.aclose()
