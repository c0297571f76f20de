"""PdqIndex: exact against brute force (boundaries 31/32, random and near queries at 50k), writes against a model,
compaction and concurrent use."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from labeler.pipeline.match import mih
from labeler.pipeline.match.base import Match
from labeler.pipeline.match.index import PdqIndex

from .corpus import flip_bits, random_hashes


def _brute(entries: list[tuple[str, str, str]], query: str, max_distance: int) -> set[tuple[str, str, int]]:
    q = int(query, 16)
    found = set()
    for pdq_hex, bank, entry_id in entries:
        d = (int(pdq_hex, 16) ^ q).bit_count()
        if d <= max_distance:
            found.add((bank, entry_id, d))
    return found


def _got(matches: list[Match]) -> set[tuple[str, str, int]]:
    return {(m.bank, m.entry_id, m.distance) for m in matches}


@pytest.fixture(scope="module")
def dataset() -> tuple[list[tuple[str, str, str]], list[str]]:
    """20k random hashes plus planted neighbours at every distance 0..40, and the queries that find them."""
    base = random_hashes(20_000, seed=7)
    entries = [(h, "RANDOM" if i % 3 else "OTHER", f"r{i}") for i, h in enumerate(base)]
    queries = []
    for d in range(41):
        anchor = base[d * 97]
        queries.append(anchor)
        planted = flip_bits(anchor, d, seed=d)
        entries.append((planted, "PLANTED", f"p{d}"))
    queries += random_hashes(30, seed=8)  # misses
    return entries, queries


@pytest.mark.parametrize("compacted", [True, False], ids=["indexed", "tail-only"])
@pytest.mark.parametrize("max_distance", [0, 15, 16, 30, 31, 32, 45])
def test_exact_against_brute_force(
    dataset: tuple[list[tuple[str, str, str]], list[str]], compacted: bool, max_distance: int
) -> None:
    entries, queries = dataset
    index = PdqIndex.build(entries) if compacted else PdqIndex()
    if not compacted:
        index.add_many(entries)
    for q in queries:
        matches = index.query(q, max_distance)
        assert _got(matches) == _brute(entries, q, max_distance)
        assert [m.distance for m in matches] == sorted(m.distance for m in matches)


def test_threshold_boundary_31_matches_32_does_not() -> None:
    anchor = random_hashes(1, seed=11)[0]
    index = PdqIndex.build([(h, "NOISE", str(i)) for i, h in enumerate(random_hashes(5000, seed=12))])
    index.add(flip_bits(anchor, 31, seed=1), "B", "at31")
    index.add(flip_bits(anchor, 32, seed=2), "B", "at32")
    index.compact()
    assert [(m.entry_id, m.distance) for m in index.query(anchor)] == [("at31", 31)]
    assert {m.entry_id for m in index.query(anchor, 32)} == {"at31", "at32"}


def test_single_entry_index_matches() -> None:
    # pytx's PDQIndex loses a lone entry after pickling (#1318); ours has no such state.
    h = random_hashes(1, seed=3)[0]
    index = PdqIndex.build([(h, "B", "only")])
    assert index.query(h) == [Match("B", "only", 0)]


def test_clustered_data_falls_back_to_a_scan() -> None:
    # 3000 identical hashes overflow their buckets; the probe must switch to a scan and stay exact.
    h = random_hashes(1, seed=4)[0]
    entries = [(h, "DUP", str(i)) for i in range(3000)] + [(flip_bits(h, 20, seed=5), "NEAR", "n")]
    index = PdqIndex.build(entries)
    matches = index.query(flip_bits(h, 3, seed=6))
    assert len(matches) == 3001
    assert matches[-1] == Match("NEAR", "n", matches[-1].distance)


def test_metadata_and_replacement() -> None:
    h1, h2 = random_hashes(2, seed=9)
    index = PdqIndex()
    index.add(h1, "B", "e1", "ext-1", "a note")
    assert index.query(h1) == [Match("B", "e1", 0, "ext-1", "a note")]
    index.add(h2, "B", "e1")  # same key, new hash: replaces
    assert index.query(h1) == []
    assert index.query(h2) == [Match("B", "e1", 0)]
    assert len(index) == 1


def test_remove_and_remove_bank() -> None:
    hashes = random_hashes(10, seed=10)
    index = PdqIndex.build([(h, "A" if i < 6 else "B", str(i)) for i, h in enumerate(hashes)])
    assert index.banks() == {"A": 6, "B": 4}
    assert index.remove("A", "0")
    assert not index.remove("A", "0")
    assert index.query(hashes[0]) == []
    assert index.remove_bank("B") == 4
    assert index.query(hashes[7]) == []
    assert index.banks() == {"A": 5}
    index.compact()  # drops the tombstones
    assert index.query(hashes[1]) == [Match("A", "1", 0)]
    assert index.query(hashes[7]) == []
    index.add(hashes[7], "B", "7")  # a removed key can come back
    assert index.query(hashes[7]) == [Match("B", "7", 0)]
    assert len(index) == 6


def test_bad_input_changes_nothing() -> None:
    good, other = random_hashes(2, seed=13)
    index = PdqIndex()
    with pytest.raises(ValueError):
        index.add_many([(good, "B", "1"), (other.upper(), "B", "2")])
    assert len(index) == 0
    with pytest.raises(ValueError):
        index.query("xyz")
    with pytest.raises(ValueError):
        index.query(good, max_distance=-1)


def test_needs_compaction_after_many_adds() -> None:
    index = PdqIndex.build([(h, "A", str(i)) for i, h in enumerate(random_hashes(1000, seed=14))])
    assert not index.needs_compaction
    index.add_many((h, "B", str(i)) for i, h in enumerate(random_hashes(5000, seed=15)))
    assert index.needs_compaction
    index.compact()
    assert not index.needs_compaction


def test_lookups_in_threads_while_writing_and_compacting() -> None:
    stable = random_hashes(2000, seed=16)
    index = PdqIndex.build([(h, "STABLE", str(i)) for i, h in enumerate(stable)])
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader(offset: int) -> None:
        i = offset
        try:
            while not stop.is_set():
                h = stable[i % len(stable)]
                assert Match("STABLE", str(i % len(stable)), 0) in index.query(flip_bits(h, 0, seed=0))
                i += 7
        except BaseException as e:  # surfaced by the assert below
            errors.append(e)

    readers = [threading.Thread(target=reader, args=(k,)) for k in range(2)]
    for t in readers:
        t.start()
    churn = random_hashes(12_000, seed=17)
    for round_ in range(6):
        batch = churn[round_ * 2000 : (round_ + 1) * 2000]
        index.add_many((h, "CHURN", f"{round_}-{i}") for i, h in enumerate(batch))
        for i in range(0, 2000, 3):
            index.remove("CHURN", f"{round_}-{i}")
        compactor = threading.Thread(target=index.compact)
        compactor.start()
        index.add(batch[1], "LATE", str(round_))  # lands while the compaction builds
        compactor.join()
        assert Match("LATE", str(round_), 0) in index.query(batch[1])
        assert all(m.entry_id != f"{round_}-0" for m in index.query(batch[0]))
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors[0]
    assert len(index) == 2000 + 6 * (2000 - 667) + 6


# -- at scale: the bucket probe against brute force, and writes against a model --


def _words(hexes: list[str]) -> np.ndarray:
    return np.frombuffer(bytes.fromhex("".join(hexes)), np.uint64).reshape(-1, 4)


@pytest.fixture(scope="module")
def big() -> tuple[np.ndarray, list[str], np.ndarray]:
    """50k random hashes; queries: 150 near ones (0-40 bits from a banked hash) and 150 random ones; and the
    distance of every query to every hash (brute force)."""
    hashes = random_hashes(50_000, seed=40)
    rng = np.random.default_rng(41)
    anchors = rng.integers(0, 50_000, 150)
    near = [flip_bits(hashes[int(i)], int(rng.integers(0, 41)), seed=k) for k, i in enumerate(anchors)]
    queries = near + random_hashes(150, seed=42)
    words = _words(hashes)
    distances = np.stack([np.bitwise_count(words ^ q).sum(axis=1, dtype=np.uint16) for q in _words(queries)])
    return words, queries, distances


@pytest.mark.parametrize("bits", ["sized", "full"])
def test_probe_equals_a_scan_on_random_and_near_queries(
    big: tuple[np.ndarray, list[str], np.ndarray], bits: str
) -> None:
    # "sized" buckets 50k rows by 16 low bits per chunk; "full" by the whole 21-22 bit chunks, as at 10 M.
    words, queries, distances = big
    tables = mih.build(words, mih.WIDTHS if bits == "full" else None)
    assert tables.bits == (mih.WIDTHS if bits == "full" else (16,) * 12)
    found = 0
    for max_distance in (11, 12, 23, 24, 31, 35, 36):
        for q, d in zip(_words(queries), distances, strict=True):
            rows, dists = mih.probe(tables, words, q, max_distance)
            expected = np.flatnonzero(d <= max_distance)
            assert sorted(rows.tolist()) == expected.tolist()
            assert dists[np.argsort(rows)].tolist() == d[expected].tolist()
            found += bool(len(expected))
    assert found > 500  # the near queries find their neighbours at most thresholds


def test_index_equals_brute_force_at_50k(big: tuple[np.ndarray, list[str], np.ndarray]) -> None:
    words, queries, distances = big
    hashes = [row.tobytes().hex() for row in words]
    index = PdqIndex.build((h, f"BANK_{i % 5}", str(i)) for i, h in enumerate(hashes))  # a generator will do
    for q, d in zip(queries, distances, strict=True):
        expected = {(f"BANK_{r % 5}", str(r), int(d[r])) for r in np.flatnonzero(d <= 31)}
        assert _got(index.query(q)) == expected


def test_writes_against_a_model() -> None:
    """Adds (new and replacing, duplicates within a batch), removals and bank drops in random order, with and
    without compaction: every lookup equals brute force over what a dict says the banks hold."""
    rng = np.random.default_rng(50)
    pool = random_hashes(400, seed=51)
    model: dict[tuple[str, str], tuple[str, str | None, str | None]] = {}
    index = PdqIndex.build([])
    for step in range(300):
        op = rng.integers(0, 10)
        if op < 6:
            batch = []
            for _ in range(int(rng.integers(1, 30))):
                bank, entry_id = f"B{rng.integers(0, 4)}", str(rng.integers(0, 150))
                h = flip_bits(
                    pool[int(rng.integers(0, len(pool)))], int(rng.integers(0, 20)), seed=int(rng.integers(1 << 30))
                )
                ext = None if rng.integers(0, 2) else f"x{step}"
                batch.append((h, bank, entry_id, ext, f"n{step}" if rng.integers(0, 3) == 0 else None))
            index.add_many(batch)
            for h, bank, entry_id, ext, note in batch:
                model[(bank, entry_id)] = (h, ext, note)
        elif op < 8:
            key = (f"B{rng.integers(0, 4)}", str(rng.integers(0, 150)))
            assert index.remove(*key) == (model.pop(key, None) is not None)
        elif op == 8 and rng.integers(0, 4) == 0:
            bank = f"B{rng.integers(0, 4)}"
            doomed = [key for key in model if key[0] == bank]
            assert index.remove_bank(bank) == len(doomed)
            for key in doomed:
                del model[key]
        else:
            index.compact()
        assert len(index) == len(model)
        q = flip_bits(pool[int(rng.integers(0, len(pool)))], int(rng.integers(0, 8)), seed=step)
        qi = int(q, 16)
        expected = {
            Match(bank, entry_id, (int(h, 16) ^ qi).bit_count(), ext, note)
            for (bank, entry_id), (h, ext, note) in model.items()
            if (int(h, 16) ^ qi).bit_count() <= 31
        }
        assert set(index.query(q)) == expected, step
    counts: dict[str, int] = {}
    for bank, _ in model:
        counts[bank] = counts.get(bank, 0) + 1
    assert index.banks() == counts


def test_build_keeps_the_last_of_repeated_keys() -> None:
    h1, h2, h3 = random_hashes(3, seed=60)
    index = PdqIndex.build([(h1, "B", "1"), (h2, "B", "1"), (h3, "B", "2"), (h3, "C", "1")])
    assert len(index) == 3
    assert index.query(h1) == []
    assert index.query(h2) == [Match("B", "1", 0)]


def test_strings_round_trip() -> None:
    h1, h2, h3 = random_hashes(3, seed=61)
    index = PdqIndex.build([(h1, "B", "é-1", "", "note ✓"), (h2, "B", "2", "ext", "")])
    index.add(h3, "B", "3")
    assert index.query(h1) == [Match("B", "é-1", 0, "", "note ✓")]
    assert index.query(h2) == [Match("B", "2", 0, "ext", "")]
    assert index.query(h3) == [Match("B", "3", 0, None, None)]
    assert index.remove("B", "é-1")
    with pytest.raises(ValueError):
        index.add(h1, "B", "x" * 70_000)
    with pytest.raises(ValueError):
        index.add_many([(h1, "B")])  # type: ignore[list-item]
    assert len(index) == 2
