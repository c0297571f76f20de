"""Exact signals (MD5, SHA-256): streamed digests equal hashlib's, exact banks are set lookups that follow bank
changes on both databases, and `bank import --signal` reads exact hash lists."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from labeler.config import Settings
from labeler.pipeline.banks import BankError, BankStore, EntryInput
from labeler.pipeline.match.base import Match
from labeler.pipeline.match.exact import ExactIndex
from labeler.pipeline.signals.exact import StreamDigests, digests_of, validate_exact
from labeler.service import Labeler

from .harness import eventually
from .test_banks_cli import invoke, runner  # noqa: F401  (fixture)


def test_streamed_digests_equal_hashlibs_whatever_the_chunking() -> None:
    rng = random.Random(5)
    for size in (0, 1, 63, 64, 65, 4096, 1_000_003):
        data = rng.randbytes(size)
        stream = StreamDigests()
        offset = 0
        while offset < size:
            step = rng.choice((1, 7, 64, 1000, 65536))
            stream.update(memoryview(data)[offset : offset + step])
            offset += step
        done = stream.done()
        assert (done.md5, done.sha256, done.size) == (
            hashlib.md5(data).hexdigest(),
            hashlib.sha256(data).hexdigest(),
            size,
        )
        assert done == digests_of(data) and stream.sha256_digest() == hashlib.sha256(data).digest()


@pytest.mark.parametrize(
    ("signal_type", "value", "ok"),
    [
        ("md5", "d41d8cd98f00b204e9800998ecf8427e", True),
        ("md5", "D41D8CD98F00B204E9800998ECF8427E", False),  # callers lower-case first, as HMA wants
        ("md5", "d41d8cd98f00b204e9800998ecf8427", False),
        ("sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", True),
        ("sha256", "d41d8cd98f00b204e9800998ecf8427e", False),
        ("pdq", "0" * 64, False),
        ("md5", 12, False),
    ],
)
def test_exact_hashes_are_validated(signal_type: str, value: object, ok: bool) -> None:
    if ok:
        assert validate_exact(signal_type, value) == value
    else:
        with pytest.raises(ValueError):
            validate_exact(signal_type, value)


def test_exact_index_is_a_set_lookup_per_signal_type() -> None:
    md5 = hashlib.md5(b"a").hexdigest()
    index = ExactIndex()
    index.add_many("md5", [(md5, "B", "2", "ext", "note"), (md5, "A", "1")])
    assert index.query("md5", md5) == [Match("A", "1", 0, None, None, "md5"), Match("B", "2", 0, "ext", "note", "md5")]
    assert index.query("sha256", md5) == [] and index.query("md5", hashlib.md5(b"b").hexdigest()) == []
    with pytest.raises(ValueError):
        index.add_many("md5", [(hashlib.md5(b"c").hexdigest(), "A", "3"), ("nope", "A", "4")])
    assert len(index) == 2  # the bad batch changed nothing
    index.add_many("md5", [(hashlib.md5(b"b").hexdigest(), "A", "1")])  # the same entry, a new hash: replaced
    assert [m.bank for m in index.query("md5", md5)] == ["B"]
    assert index.remove_bank("B") == 1 and index.query("md5", md5) == [] and len(index) == 1
    assert index.remove("A", "1") and not index.remove("A", "1") and len(index) == 0


async def test_exact_banks_are_matched_and_follow_changes_made_elsewhere(make_settings: object) -> None:
    settings: Settings = make_settings(extra={"pipeline": {"bank_poll_seconds": 0.1}})  # type: ignore[operator]
    labeler = Labeler(settings)
    await labeler.start()
    other = Labeler(settings, with_hub=False)  # stands in for `labeler bank …` in another process
    a, b = hashlib.sha256(b"a").hexdigest(), hashlib.sha256(b"b").hexdigest()
    try:
        elsewhere = BankStore(other.engine)
        await elsewhere.create("FILES", signal_type="sha256")
        await elsewhere.create("IMAGES")  # PDQ
        assert await elsewhere.add_entries("FILES", [EntryInput(a, "ext-a"), EntryInput(a, "again")]) == 1
        matcher = labeler.pipeline.matcher
        [hit] = await matcher.lookup_exact("sha256", a)  # first load
        assert (hit.bank, hit.external_id, hit.distance, hit.signal_type) == ("FILES", "ext-a", 0, "sha256")
        assert await matcher.lookup_exact("md5", hashlib.md5(b"a").hexdigest()) == []
        await elsewhere.add_entries("FILES", [EntryInput(b)])

        async def added() -> bool:
            return len(await matcher.lookup_exact("sha256", b)) == 1

        await eventually(added, within=5, what="an added exact entry")
        assert await elsewhere.remove_entry("FILES", int(hit.entry_id))

        async def removed() -> bool:
            return await matcher.lookup_exact("sha256", a) == []

        await eventually(removed, within=5, what="a removed exact entry")
        banks = {bank.name: (bank.signal_type, bank.entries) for bank in await elsewhere.all_banks()}
        assert banks == {"FILES": ("sha256", 1), "IMAGES": ("pdq", 0)}
        assert await elsewhere.drop("FILES", actor="cli") == 1

        async def dropped() -> bool:
            return await matcher.lookup_exact("sha256", b) == []

        await eventually(dropped, within=5, what="a dropped exact bank")
        with pytest.raises(BankError, match="unknown signal type"):
            await elsewhere.create("ODD", signal_type="crc32")
    finally:
        await other.aclose()
        await labeler.aclose()


def test_bank_import_signal(runner: CliRunner, tmp_path: Path) -> None:  # noqa: F811
    good = [hashlib.md5(bytes([n])).hexdigest() for n in range(3)]
    path = tmp_path / "md5.csv"
    path.write_text(f"md5,external_id\n{good[0].upper()},x-0\nnot-an-md5,x-1\n{good[1]},x-2\n{good[2]}\n")
    out = invoke(runner, "bank", "import", "FILES", str(path), "--signal", "md5", "--create", code=1)
    assert f"{path}:3: invalid md5 hash" in out and "imported 3 entries into FILES" in out
    [listed] = json.loads(invoke(runner, "bank", "list", "--json"))
    assert (listed["name"], listed["signal_type"], listed["entries"]) == ("FILES", "md5", 3)
    # The bank's type is the default; a file of another type is refused before anything is read.
    again = tmp_path / "again.txt"
    again.write_text(f"{good[0]} x-0\n")
    assert "imported 0 entries" in invoke(runner, "bank", "import", "FILES", str(again))
    assert "holds md5 hashes, not pdq" in invoke(
        runner, "bank", "import", "FILES", str(again), "--signal", "pdq", code=1
    )
    assert "no bank named" in invoke(runner, "bank", "import", "NEW", str(again), "--signal", "md5", code=1)
    invoke(runner, "bank", "create", "SHAS", "--signal", "sha256")
    assert "SHAS  sha256  0 entries" in invoke(runner, "bank", "list")


def test_bank_import_vpdq(runner: CliRunner, tmp_path: Path) -> None:  # noqa: F811
    frames = [f"{n:064x},{90 + n},{n}.0" for n in range(3)]
    signal = json.dumps(frames)  # pytx's signal string: a JSON list, with spaces
    text = tmp_path / "videos.txt"
    text.write_text(f"# banked videos\n{signal} case-1 first note\n[1, 2] case-2\n{json.dumps(frames[:1])}\n")
    out = invoke(runner, "bank", "import", "VIDEOS", str(text), "--signal", "vpdq", "--create", code=1)
    assert f"{text}:3: vPDQ feature must be 'hex,quality,time'" in out and "imported 2 entries" in out
    csv_file = tmp_path / "videos.csv"
    csv_file.write_text('vpdq,external_id\n"' + signal.replace('"', '""') + '",case-1\n')
    assert "imported 0 entries" in invoke(runner, "bank", "import", "VIDEOS", str(csv_file))  # the same video
    [listed] = json.loads(invoke(runner, "bank", "list", "--json"))
    assert (listed["signal_type"], listed["entries"]) == ("vpdq", 2)
