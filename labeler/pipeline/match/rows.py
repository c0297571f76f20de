"""The rows of a `PdqIndex` in flat numpy arrays: hash, bank, key and strings of every entry, no Python object per row.

A bank of 10 M entries held as Python tuples, dicts and sets cost ~580 bytes an entry; here an entry costs its
32-byte hash, a bank code, a 64-bit key hash, one end offset, two string lengths, a flag byte and its strings'
UTF-8 bytes (~70 bytes for a numeric entry id and no external id or note).

Arrays are allocated with room to spare and rows are appended in place past the published count, so readers of an
older count never see a row change, except its bank code, which removal sets to -1 (`DEAD`).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, cast

import numpy as np

DEAD: Final = -1
_MAX_FIELD: Final = 0xFFFF  # bytes in an entry id or external id (stored as uint16 lengths)
_NO_EXTERNAL: Final = 1
_NO_NOTE: Final = 2
_HEX_OK: Final = np.zeros(256, bool)
_HEX_OK[np.frombuffer(b"0123456789abcdef", np.uint8)] = True


def _capacity(rows: int) -> int:
    return max(1024, rows + rows // 4)


@dataclass(frozen=True, slots=True)
class Rows:
    """Parallel arrays over rows; `text` holds each row's entry id, external id and note, back to back."""

    words: np.ndarray  # (cap, 4) uint64: the hash, bytes in hex order
    banks: np.ndarray  # (cap,) int32: bank code, DEAD once removed
    keys: np.ndarray  # (cap,) int64: hash((bank, entry_id)), this process's; equal keys are confirmed on strings
    ends: np.ndarray  # (cap,) uint32 (int64 past 4 GB of text): where the row's strings end in `text`
    lengths: np.ndarray  # (cap, 2) uint16: UTF-8 bytes of the entry id and of the external id
    flags: np.ndarray  # (cap,) uint8: _NO_EXTERNAL | _NO_NOTE
    text: np.ndarray  # (text cap,) uint8

    @classmethod
    def allocate(cls, rows: int, text: int) -> Rows:
        return cls(
            words=np.zeros((rows, 4), np.uint64),
            banks=np.full(rows, DEAD, np.int32),
            keys=np.zeros(rows, np.int64),
            ends=np.zeros(rows, np.uint32 if text < 2**32 else np.int64),
            lengths=np.zeros((rows, 2), np.uint16),
            flags=np.zeros(rows, np.uint8),
            text=np.zeros(text, np.uint8),
        )

    def text_used(self, n: int) -> int:
        return int(self.ends[n - 1]) if n else 0

    def with_room(self, n: int, block: Rows) -> Rows:
        """Self if `block` fits after row n, else a larger copy of rows [0, n) (readers keep the old arrays)."""
        used, extra = self.text_used(n), len(block.text)
        if n + len(block.words) <= len(self.words) and used + extra <= len(self.text):
            return self
        grown = Rows.allocate(_capacity(n + len(block.words)), _capacity(used + extra))
        grown.put(0, self.head(n))
        return grown

    def put(self, at: int, block: Rows) -> None:
        """Write `block`'s rows at row `at` (its `ends` relative to its own text)."""
        k, offset = len(block.words), self.text_used(at)
        self.words[at : at + k] = block.words
        self.banks[at : at + k] = block.banks
        self.keys[at : at + k] = block.keys
        self.ends[at : at + k] = block.ends + offset
        self.lengths[at : at + k] = block.lengths
        self.flags[at : at + k] = block.flags
        self.text[offset : offset + len(block.text)] = block.text

    def head(self, n: int) -> Rows:
        """Rows [0, n) as views, `ends` relative to the start as `put` expects."""
        return Rows(
            self.words[:n], self.banks[:n], self.keys[:n], self.ends[:n], self.lengths[:n], self.flags[:n],
            self.text[: self.text_used(n)],
        )  # fmt: skip

    def select(self, keep: np.ndarray, spare: int) -> Rows:
        """A compact copy of the rows where the boolean mask `keep` is set, with room for `spare` more rows."""
        sizes = np.diff(self.ends, prepend=0)
        kept_sizes = sizes[keep]
        m, text = len(kept_sizes), int(kept_sizes.sum())
        out = Rows.allocate(m + spare, text + text // max(1, m) * spare)
        # One column at a time, so the temporaries stay one column large.
        out.words[:m] = self.words[keep]
        out.banks[:m] = self.banks[keep]
        out.keys[:m] = self.keys[keep]
        out.ends[:m] = np.cumsum(kept_sizes)
        out.lengths[:m] = self.lengths[keep]
        out.flags[:m] = self.flags[keep]
        out.text[:text] = self.text[np.repeat(keep, sizes)]
        return out

    def tail_from(self, start: int) -> Rows:
        """Rows [start, end) of a `head` as a block of their own (`ends` relative to their first byte)."""
        offset = self.text_used(start)
        return Rows(
            self.words[start:], self.banks[start:], self.keys[start:], self.ends[start:] - offset,
            self.lengths[start:], self.flags[start:], self.text[offset:],
        )  # fmt: skip

    def strings(self, row: int) -> tuple[str, str | None, str | None]:
        """(entry_id, external_id, note) of a row."""
        start = int(self.ends[row - 1]) if row else 0
        raw = self.text[start : int(self.ends[row])].tobytes()
        id_len, ext_len = (int(x) for x in self.lengths[row])
        flags = int(self.flags[row])
        external = None if flags & _NO_EXTERNAL else raw[id_len : id_len + ext_len].decode()
        note = None if flags & _NO_NOTE else raw[id_len + ext_len :].decode()
        return raw[:id_len].decode(), external, note


def parse(entries: Iterable[Sequence[str | None]], bank_code: dict[str, int]) -> tuple[Rows, list[str], list[str]]:
    """`(pdq_hex, bank, entry_id[, external_id[, note]])` rows as a block of `Rows`, and each row's bank name and
    entry id.

    Validates everything first (ValueError, nothing changed); banks not in `bank_code` are added to it, numbered
    in order. The per-row work is done by C loops (zip, map, join) over whole columns: ~1 µs a row."""
    hexes, banks, ids, externals, notes = _columns(entries)
    words = _parse_hashes(hexes)
    names, id_strs = _strings(banks), _strings(ids)
    if not set(map(type, itertools.chain(externals, notes))) <= {str, type(None)}:
        raise ValueError("external_id and note must be strings or None")
    for name in set(names).difference(bank_code):
        bank_code[name] = len(bank_code)
    ext_strs = [value or "" for value in externals]
    note_strs = [value or "" for value in notes]
    id_len, ext_len, note_len = (_utf8_lengths(column) for column in (id_strs, ext_strs, note_strs))  # type: ignore[arg-type]
    if len(id_len) and max(id_len.max(), ext_len.max()) > _MAX_FIELD:
        raise ValueError(f"entry ids and external ids are limited to {_MAX_FIELD} bytes")
    text = "".join(itertools.chain.from_iterable(zip(id_strs, ext_strs, note_strs, strict=True))).encode()  # type: ignore[arg-type]
    no_external, no_note = (
        np.fromiter(map(operator.is_, column, itertools.repeat(None)), bool, len(column))
        for column in (externals, notes)
    )
    block = Rows(
        words=words,
        banks=np.fromiter(map(bank_code.__getitem__, names), np.int32, len(names)),
        keys=np.fromiter(map(hash, zip(names, id_strs, strict=True)), np.int64, len(names)),
        ends=np.cumsum(id_len + ext_len + note_len),
        lengths=np.stack([id_len, ext_len], axis=1).astype(np.uint16),
        flags=(no_external * _NO_EXTERNAL | no_note * _NO_NOTE).astype(np.uint8),
        text=np.frombuffer(text, np.uint8),
    )
    return block, names, id_strs


def _columns(entries: Iterable[Sequence[str | None]]) -> list[list[object]]:
    """The five columns of index rows of 3 to 5 fields (missing external ids and notes are None)."""
    rows = list(entries)
    widths = set(map(len, rows))
    if not widths <= {3, 4, 5}:
        bad = next(row for row in rows if len(row) not in (3, 4, 5))
        raise ValueError(f"index rows are (pdq, bank, entry_id[, external_id[, note]]): {bad!r:.120}")
    width = widths.pop() if len(widths) == 1 else 5
    if widths:  # of several widths: pad them all to five
        rows = [(*row, None, None)[:5] for row in rows]
    columns: list[list[object]] = [list(map(operator.itemgetter(i), rows)) for i in range(width)]
    return columns + [[None] * len(rows)] * (5 - width)


def _strings(column: list[object]) -> list[str]:
    """`column` if all its values are strings (banks and entry ids), else ValueError."""
    if not set(map(type, column)) <= {str}:
        raise ValueError("bank and entry_id must be strings")
    return cast(list[str], column)


def _parse_hashes(hexes: list[object]) -> np.ndarray:
    """(n, 4) uint64 of PDQ hashes as HMA accepts them (exactly 64 lowercase hex digits each)."""
    if not set(map(type, hexes)) <= {str} or not set(map(len, hexes)) <= {64}:  # type: ignore[arg-type]
        bad = next(h for h in hexes if type(h) is not str or len(h) != 64)
        raise ValueError(f"invalid PDQ hash: {bad!r:.80}")
    joined = "".join(cast(list[str], hexes)).encode("ascii", "replace")
    digits = np.frombuffer(joined, np.uint8)
    if not _HEX_OK[digits].all():
        bad = hexes[int(np.flatnonzero(~_HEX_OK[digits])[0]) // 64]
        raise ValueError(f"invalid PDQ hash: {bad!r:.80}")
    return np.frombuffer(bytes.fromhex(joined.decode()), np.uint64).reshape(-1, 4).copy()


def _utf8_lengths(column: list[str]) -> np.ndarray:
    lengths = np.fromiter(map(len, column), np.int64, len(column))
    if len("".join(column).encode()) != lengths.sum():  # not all ASCII: count bytes one by one
        lengths = np.fromiter((len(s.encode()) for s in column), np.int64, len(column))
    return lengths
