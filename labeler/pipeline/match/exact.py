"""Exact-hash banks (MD5, SHA-256) in memory: a dictionary from (signal type, hash) to the bank entries holding it.

A set lookup answers at any bank size in well under a microsecond, so it runs on the event loop. Every match is at
distance 0. Entries are keyed like `PdqIndex` entries, by (bank, entry id), so bank changes replay the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from labeler.pipeline.match.base import Match, sort_matches
from labeler.pipeline.signals.exact import validate_exact

_Entry = tuple[str | None, str | None]  # external id, note


class ExactIndex:
    """Bank entries by exact hash; `query` returns every entry holding exactly that hash."""

    def __init__(self) -> None:
        self._by_hash: dict[tuple[str, str], dict[tuple[str, str], _Entry]] = {}
        self._keys: dict[tuple[str, str], tuple[str, str]] = {}  # (bank, entry id) → (signal type, hash)
        self._bank_entries: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def add_many(self, signal_type: str, rows: Iterable[Sequence[str | None]]) -> int:
        """Add `(hash, bank, entry_id[, external_id[, note]])` rows of one signal type; an entry with the same
        (bank, entry_id) is replaced. All hashes are validated first, so a bad row changes nothing."""
        parsed = []
        for row in rows:
            value, bank, entry_id, *rest = row
            if not isinstance(bank, str) or not isinstance(entry_id, str):
                raise ValueError(f"bank and entry_id must be strings: {row!r:.120}")
            meta = (rest[0] if rest else None, rest[1] if len(rest) > 1 else None)
            parsed.append((validate_exact(signal_type, value), bank, entry_id, meta))
        for value, bank, entry_id, meta in parsed:
            self.remove(bank, entry_id)
            self._by_hash.setdefault((signal_type, value), {})[(bank, entry_id)] = meta
            self._keys[(bank, entry_id)] = (signal_type, value)
            self._bank_entries.setdefault(bank, set()).add(entry_id)
        return len(parsed)

    def remove(self, bank: str, entry_id: str) -> bool:
        found = self._keys.pop((bank, entry_id), None)
        if found is None:
            return False
        holders = self._by_hash[found]
        del holders[(bank, entry_id)]
        if not holders:
            del self._by_hash[found]
        self._bank_entries[bank].discard(entry_id)
        return True

    def remove_bank(self, bank: str) -> int:
        entry_ids = list(self._bank_entries.get(bank, ()))
        for entry_id in entry_ids:
            self.remove(bank, entry_id)
        self._bank_entries.pop(bank, None)
        return len(entry_ids)

    def query(self, signal_type: str, value: str) -> list[Match]:
        """Every entry holding `value`, in the one order matchers return (bank, then entry id)."""
        holders = self._by_hash.get((signal_type, value), {})
        return sort_matches(
            Match(bank, entry_id, 0, external_id, note, signal_type)
            for (bank, entry_id), (external_id, note) in holders.items()
        )
