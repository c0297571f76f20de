"""Lazy re-signing after a key rotation (SPEC-LABEL; design.md invariant 5).

Any read path hands its rows through `Resigner.current()`: rows signed by a key other than the active one get a
fresh signature over the same fields (seq and `cts` unchanged), and the new signature is persisted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from labeler.keys import Keyring
from labeler.store.labels import LabelStore, StoredLabel, rows_to_stored, stored_to_rows


class Resigner:
    def __init__(self, store: LabelStore, keyring: Keyring) -> None:
        self.store = store
        self.keyring = keyring

    async def current_rows(self, rows: Sequence[Any]) -> Sequence[Any]:
        """`current` for plain rows (`LabelStore.query_rows`); the common case, every row signed by the active
        key, costs one comparison per row."""
        active_id = self.keyring.active()[0].id
        if all(row[9] == active_id for row in rows):
            return rows
        return stored_to_rows(await self.current(rows_to_stored(rows)))

    async def current(self, rows: Sequence[StoredLabel]) -> list[StoredLabel]:
        active_info, key = self.keyring.active()
        out: list[StoredLabel] = []
        refreshed: list[StoredLabel] = []
        stale_ids: dict[int, str] = {}
        for row in rows:
            if row.key_id == active_info.id:
                out.append(row)
                continue
            fresh = StoredLabel(seq=row.seq, label=row.label.signed(key), key_id=active_info.id)
            stale_ids[row.seq] = row.key_id
            refreshed.append(fresh)
            out.append(fresh)
        if refreshed:
            await self.store.replace_signatures(refreshed, stale_ids)
        return out


async def resign_backlog(
    store: LabelStore, resigner: Resigner, *, batch: int = 500, progress: Callable[[int], None] | None = None
) -> int:
    """Re-sign every label not signed by the active key (`labeler keys resign`), in seq order and batches."""
    done, after = 0, 0
    while True:
        rows = await store.stale(resigner.keyring.active()[0].id, after, batch)
        if not rows:
            return done
        await resigner.current(rows)
        after, done = rows[-1].seq, done + len(rows)
        if progress is not None:
            progress(len(rows))
