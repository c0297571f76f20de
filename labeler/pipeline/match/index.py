"""Exact in-memory PDQ index for the embedded matcher: multi-index hashing (`mih`) over compact rows (`rows`).

Sized for banks of 10 M hashes: ~130 bytes an entry in numpy arrays (no Python object per entry), lookups that
read a few thousand candidates instead of every row, and the same answers as a brute-force scan at any threshold.

Concurrency: lookups run in worker threads while writes come from the event loop. Readers take the current
`_Snapshot` (one attribute read) and never lock; rows below a snapshot's `n` are never written again, except
their bank code, which removal sets to DEAD (readers skip such rows). Writers serialise on a lock and append rows
past `n`; appended rows form a brute-forced tail until `compact()` folds them into the bucket tables and drops
the dead rows. `compact()` builds outside the write lock, so adds and removals never wait for it.

Entries are keyed by (bank, entry id): adding a key that is present replaces its row. The indexed rows are found
by their key hash in `_Snapshot.key_order` (confirmed on the strings), the tail's in a dict.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Sequence, Sized
from dataclasses import dataclass, replace
from typing import Final

import numpy as np

from labeler.pipeline.hasher import validate_pdq_hex
from labeler.pipeline.match import mih
from labeler.pipeline.match.base import DEFAULT_MAX_DISTANCE, Match, sort_matches
from labeler.pipeline.match.rows import DEAD, Rows, parse

# Compact once the unindexed tail is longer than this many rows or 1/16 of the indexed rows.
_MIN_TAIL: Final = 4096
_BUILD_BATCH: Final = 100_000  # rows parsed at a time by `build`, so a generator's rows need not all exist at once


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What a reader needs, consistent as a whole: rows [0, n), the first `n_base` in `tables`."""

    rows: Rows
    n: int
    n_base: int
    tables: mih.Tables | None  # None while nothing is indexed
    key_order: np.ndarray  # (n_base,) int64: indexed rows sorted by key


_EMPTY = _Snapshot(Rows.allocate(0, 0), 0, 0, None, np.zeros(0, np.int64))


class PdqIndex:
    """Bank entries by PDQ hash; `query` returns every entry within a Hamming distance, exactly."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # writers
        self._compact_lock = threading.Lock()  # one compaction at a time
        self._snap = _EMPTY
        self._bank_code: dict[str, int] = {}
        self._bank_names: list[str] = []  # by code
        self._live: list[int] = []  # live entries by bank code
        self._tail: dict[tuple[int, str], int] = {}  # (bank code, entry id) → row, for rows past n_base
        self._dead = 0  # dead rows below n

    @classmethod
    def build(cls, entries: Iterable[Sequence[str | None]]) -> PdqIndex:
        """An index holding `entries` (see `add_many`), already compacted: the way to load banks at start.

        Rows are read in batches into numpy arrays, so the caller may pass a generator of any length; a later
        row with the same (bank, entry id) as an earlier one replaces it, as with `add_many`."""
        index = cls()
        if isinstance(entries, Sized):  # room for all of them at once, rather than growing as they come
            rows = len(entries) + len(entries) // 64 + 1024  # and a little for the adds that follow
            index._snap = replace(_EMPTY, rows=Rows.allocate(rows, 16 * rows))
        source = iter(entries)
        while batch := list(itertools.islice(source, _BUILD_BATCH)):
            block, _, _ = parse(batch, index._bank_code)
            with index._lock:
                index._register_banks()
                index._append(block)
        with index._lock:
            index._kill(_superseded(index._snap.rows, index._snap.n))
            index._tail.clear()
        index.compact()
        return index

    def __len__(self) -> int:
        return sum(self._live)

    def banks(self) -> dict[str, int]:
        """Entry count per bank."""
        with self._lock:
            return {name: live for name, live in zip(self._bank_names, self._live, strict=True) if live}

    def add(
        self, pdq_hex: str, bank: str, entry_id: str, external_id: str | None = None, note: str | None = None
    ) -> None:
        """Add one entry; an entry with the same (bank, entry_id) is replaced."""
        self.add_many([(pdq_hex, bank, entry_id, external_id, note)])

    def add_many(self, entries: Iterable[Sequence[str | None]]) -> int:
        """Add `(pdq_hex, bank, entry_id[, external_id[, note]])` rows; returns how many were added.

        All rows are validated before anything changes, so a bad row leaves the index untouched."""
        with self._lock:  # parse registers new bank names
            block, names, ids = parse(entries, self._bank_code)
            if not len(block.words):
                return 0
            self._register_banks()
            first = self._snap.n
            replaced = self._indexed_rows(self._snap, names, ids)
            self._append(block)
            tail = self._tail
            for row, key in enumerate(zip(block.banks.tolist(), ids, strict=True), start=first):
                previous = tail.get(key)
                if previous is not None:  # an earlier tail row, perhaps of this very block
                    replaced.append(previous)
                tail[key] = row
            self._kill(replaced)
        return len(block.words)

    def remove(self, bank: str, entry_id: str) -> bool:
        """Remove one entry; False if it was not there."""
        with self._lock:
            code = self._bank_code.get(bank)
            if code is None:
                return False
            row = self._tail.pop((code, entry_id), None)
            found = [row] if row is not None else self._indexed_rows(self._snap, [bank], [entry_id])
            self._kill(found)
            return bool(found)

    def remove_bank(self, bank: str) -> int:
        """Remove every entry of `bank`; returns how many."""
        with self._lock:
            code = self._bank_code.get(bank)
            if code is None:
                return 0
            snap = self._snap
            rows = np.flatnonzero(snap.rows.banks[: snap.n] == code)
            self._kill(rows)
            for key in [key for key in self._tail if key[0] == code]:
                del self._tail[key]
            return len(rows)

    @property
    def needs_compaction(self) -> bool:
        """True when the unindexed tail or the dead rows have grown enough to slow lookups."""
        snap = self._snap
        tail = snap.n - snap.n_base
        return tail > max(_MIN_TAIL, snap.n_base // 16) or self._dead > max(_MIN_TAIL, snap.n // 4)

    def compact(self) -> None:
        """Index the tail and drop dead rows. Safe alongside lookups and writes; O(n log n) time, O(n) memory."""
        with self._compact_lock:
            with self._lock:
                snap = self._snap
                keep = snap.rows.banks[: snap.n] != DEAD
            m = int(keep.sum())
            # Nothing to drop: the rows stay where they are and only the tables are new. Else a compact copy.
            base = snap.rows if m == snap.n else snap.rows.head(snap.n).select(keep, spare=max(1024, m // 64))
            tables = mih.build(base.words[:m]) if m else None
            key_order = np.argsort(base.keys[:m])
            with self._lock:
                current = self._snap
                if base is snap.rows:  # rows added or removed meanwhile are in the current arrays already
                    self._snap = _Snapshot(current.rows, current.n, m, tables, key_order)
                    self._tail = {key: row for key, row in self._tail.items() if row >= m}
                    return
                # Rows removed while the tables were built, and rows added meanwhile (they stay in the tail).
                base.banks[np.flatnonzero(current.rows.banks[: snap.n][keep] == DEAD)] = DEAD
                extra = current.rows.head(current.n).tail_from(snap.n)
                rows = base.with_room(m, extra)
                rows.put(m, extra)
                n = m + len(extra.words)
                self._tail = {key: m + j for j, key in _live_keys(extra)}
                self._dead = int((rows.banks[:n] == DEAD).sum())
                self._snap = _Snapshot(rows, n, m, tables, key_order)

    def query(self, pdq_hex: str, max_distance: int = DEFAULT_MAX_DISTANCE) -> list[Match]:
        """Every entry within `max_distance` bits (inclusive), nearest first. Thread-safe, lock-free."""
        if not 0 <= max_distance <= 256:
            raise ValueError(f"max_distance must be within 0..256, not {max_distance}")
        q = np.frombuffer(bytes.fromhex(validate_pdq_hex(pdq_hex)), dtype=np.uint64)
        snap = self._snap
        words = snap.rows.words
        rows, dists = mih.scan(words, q, snap.n_base, snap.n, max_distance)
        if snap.tables is not None:
            base = mih.probe(snap.tables, words, q, max_distance)
            rows, dists = np.concatenate([base[0], rows]), np.concatenate([base[1], dists])
        matches = []
        codes = snap.rows.banks[rows].tolist()
        names = self._bank_names
        for row, code, distance in zip(rows.tolist(), codes, dists.tolist(), strict=True):
            if code != DEAD:
                entry_id, external_id, note = snap.rows.strings(row)
                matches.append(Match(names[code], entry_id, distance, external_id, note))
        return sort_matches(matches)

    # -- writer internals (self._lock held) --

    def _register_banks(self) -> None:
        """Names for the codes `parse` handed out."""
        for name in list(self._bank_code)[len(self._bank_names) :]:
            self._bank_names.append(name)
            self._live.append(0)

    def _append(self, block: Rows) -> None:
        snap = self._snap
        rows = snap.rows.with_room(snap.n, block)
        rows.put(snap.n, block)
        for code, count in enumerate(np.bincount(block.banks, minlength=len(self._live)).tolist()):
            self._live[code] += count
        self._snap = _Snapshot(rows, snap.n + len(block.words), snap.n_base, snap.tables, snap.key_order)

    def _kill(self, rows: Sequence[int] | np.ndarray) -> None:
        banks = self._snap.rows.banks
        rows = np.unique(np.asarray(rows, np.int64))
        rows = rows[banks[rows] != DEAD]
        codes = banks[rows]
        banks[rows] = DEAD
        for code, count in enumerate(np.bincount(codes, minlength=len(self._live)).tolist()):
            self._live[code] -= count
        self._dead += len(rows)

    def _indexed_rows(self, snap: _Snapshot, banks: Sequence[str], entry_ids: Sequence[str]) -> list[int]:
        """Live indexed rows holding any of the (bank, entry id) keys given."""
        if not snap.n_base:
            return []
        wanted = set(zip(banks, entry_ids, strict=True))
        keys = np.fromiter(map(hash, wanted), np.int64, len(wanted))
        sorted_keys = snap.rows.keys
        lo = np.searchsorted(sorted_keys[: snap.n_base], keys, side="left", sorter=snap.key_order)
        hi = np.searchsorted(sorted_keys[: snap.n_base], keys, side="right", sorter=snap.key_order)
        found = []
        for start, stop in zip(lo.tolist(), hi.tolist(), strict=True):
            for row in snap.key_order[start:stop].tolist():
                code = int(snap.rows.banks[row])
                if code != DEAD and (self._bank_names[code], snap.rows.strings(row)[0]) in wanted:
                    found.append(row)
        return found


def _live_keys(block: Rows) -> list[tuple[int, tuple[int, str]]]:
    """(row, (bank code, entry id)) of the live rows of a block."""
    return [(i, (code, block.strings(i)[0])) for i, code in enumerate(block.banks.tolist()) if code != DEAD]


def _superseded(rows: Rows, n: int) -> np.ndarray:
    """Rows among [0, n) that a later row with the same (bank, entry id) replaces (whole-array, for `build`)."""
    order = np.argsort(rows.keys[:n])
    sorted_keys = rows.keys[order]
    repeated = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
    suspects = np.unique(np.concatenate([order[repeated], order[repeated + 1]]))
    latest: dict[tuple[int, str], int] = {}
    doomed = []
    for row in suspects.tolist():  # ascending: a later row replaces an earlier one
        key = (int(rows.banks[row]), rows.strings(row)[0])
        if key in latest:
            doomed.append(latest[key])
        latest[key] = row
    return np.array(doomed, np.int64)
