"""Importing hash lists into embedded banks, for `labeler bank import` and the console's Banks page: reading CSV,
TSV or plain text with line numbers for every bad row, and adding the entries a batch per transaction.

Every hash in a file is of one signal type (`--signal`: pdq, md5, sha256, vpdq). Columns are `hash[, external_id[,
note]]`. CSV/TSV may start with a header naming them (the hash as `hash`/`signal` or the signal type's name,
`external_id`/`id`/`content_id`, `note`), in any order. Plain text is one hash per line, optionally followed by
whitespace and an external id, then a note (the rest of the line). Blank lines and lines starting with `#` are
skipped. Hashes are accepted in either case and stored lowercase, as HMA and exchange lists write them. A vPDQ
hash is pytx's signal string (a JSON list of `"hex,quality,time"` strings; CSV quotes it as any field); in plain
text the JSON list comes first on the line, spaces and all.

Importing is idempotent: a hash already in the bank is skipped, so an import that stopped (an outage, a killed
process) is finished by running the same file again. Each batch is one bank change (`labeler.pipeline.banks`),
which every process replays into its index, so the entries match as soon as it commits.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Final

from labeler.pipeline.banks import BankError, BankStore, EntryInput
from labeler.pipeline.hma_banks import ImportReport
from labeler.pipeline.signals import PDQ, SIGNAL_TYPES, VPDQ
from labeler.pipeline.signals.values import normalised_hash

FORMATS: Final = ("csv", "tsv", "text")
_HEADER_NAMES: Final = {
    "hash": "hash", "signal": "hash", **{name: "hash" for name in SIGNAL_TYPES},
    "external_id": "external_id", "id": "external_id", "content_id": "external_id",
    "note": "note",
}  # fmt: skip
_MAX_FIELD: Final = 1000
BATCH: Final = 1000  # entries per transaction: a stopped import keeps every batch before it


@dataclass
class ParsedFile:
    entries: list[tuple[int, EntryInput]] = field(default_factory=list)  # (line number, entry)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)


def detect_format(path: PurePath) -> str:
    suffix = path.suffix.lower()
    return "csv" if suffix == ".csv" else "tsv" if suffix in (".tsv", ".tab") else "text"


def parse_file(path: Path, fmt: str | None = None, signal_type: str = PDQ) -> ParsedFile:
    """Every row of `path` as an entry or an error; a file that cannot be read raises OSError/UnicodeError."""
    text = path.read_text(encoding="utf-8-sig")
    return parse_text(text, fmt or detect_format(path), signal_type)


def parse_text(text: str, fmt: str, signal_type: str = PDQ) -> ParsedFile:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    if signal_type not in SIGNAL_TYPES:
        raise ValueError(f"signal type must be one of {', '.join(SIGNAL_TYPES)}")
    parsed = ParsedFile()
    if fmt == "text":
        rows = _text_rows(text, json_first=signal_type == VPDQ)
    else:
        rows = _delimited_rows(text, "," if fmt == "csv" else "\t")
    columns: list[str] | None = None
    for line_no, cells in rows:
        if columns is None and fmt != "text" and cells and cells[0].strip().lower() in _HEADER_NAMES:
            columns = [_HEADER_NAMES.get(c.strip().lower(), "") for c in cells]
            if "hash" not in columns:
                parsed.errors.append((line_no, "header has no hash column"))
                return parsed
            continue
        named = dict(zip(columns or ["hash", "external_id", "note"], cells, strict=False))
        named.pop("", None)
        try:
            parsed.entries.append((line_no, _entry(named, signal_type)))
        except ValueError as exc:
            parsed.errors.append((line_no, str(exc)))
    return parsed


def _entry(named: dict[str, str], signal_type: str) -> EntryInput:
    value = normalised_hash(signal_type, named.get("hash", ""))
    external_id = named.get("external_id", "").strip() or None
    note = named.get("note", "").strip() or None
    for text in (external_id, note):
        if text is not None and len(text) > _MAX_FIELD:
            raise ValueError(f"field longer than {_MAX_FIELD} characters")
    return EntryInput(value, external_id, note)


def _delimited_rows(text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    for cells in reader:
        if cells and any(c.strip() for c in cells) and not cells[0].lstrip().startswith("#"):
            yield reader.line_num, cells


def _text_rows(text: str, *, json_first: bool = False) -> Iterator[tuple[int, list[str]]]:
    """Whitespace-separated fields; with `json_first` the first field is a JSON value (which may hold spaces)."""
    decoder = json.JSONDecoder()
    for line_no, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not json_first:
            yield line_no, stripped.split(None, 2)
            continue
        try:
            _, end = decoder.raw_decode(stripped)
        except (ValueError, RecursionError):
            end = len(stripped.split(None, 1)[0])  # not JSON: the row's error comes from parsing the field
        yield line_no, [stripped[:end], *stripped[end:].split(None, 1)]


async def bank_signal_type(store: BankStore, name: str, wanted: str | None, create: bool) -> str:
    """The signal type to read a file for bank `name` as: the bank's, which `wanted` must agree with; `wanted`
    (default pdq) for a bank that `create` will make. BankError if there is no such bank and `create` is off."""
    banks = {b.name: b.signal_type for b in await store.all_banks()}
    if name not in banks:
        if not create:
            raise BankError(f"no bank named {name!r} (an import with create makes it: --create)")
        return wanted or PDQ
    if wanted is not None and wanted != banks[name]:
        raise BankError(f"bank {name} holds {banks[name]} hashes, not {wanted}")
    return banks[name]


async def import_entries(
    store: BankStore,
    name: str,
    entries: Sequence[EntryInput],
    *,
    create: bool,
    signal_type: str,
    step: Callable[[int, int], None],
    actor: str,
) -> ImportReport:
    """Add `entries` to bank `name` (made first if `create` and missing) BATCH at a time; `step(done, landed)`
    after each batch. The bank change log keeps `actor`."""
    if create and name not in {b.name for b in await store.all_banks()}:
        await store.create(name, signal_type=signal_type)
    report = ImportReport()
    for start in range(0, len(entries), BATCH):
        batch = entries[start : start + BATCH]
        landed = await store.add_entries(name, batch, actor=actor)
        report.landed += landed
        step(len(batch), landed)
    report.skipped = len(entries) - report.landed
    return report
