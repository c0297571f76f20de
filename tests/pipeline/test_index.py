"""PdqIndex: exact against brute force (boundaries 31/32), writes, compaction and concurrent use."""

from __future__ import annotations

import threading

import pytest

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
