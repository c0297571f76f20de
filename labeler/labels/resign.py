"""Lazy re-signing after a key rotation (SPEC-LABEL; design.md invariant 5).

Any read path hands its rows through `Resigner.current()`: rows signed by a retired key of ours get a fresh
signature by the active key over the same fields (seq and `cts` unchanged), and the new signature is persisted.

A re-signature is only ever made by a key that the label's own `src` DID document names: the active key is the
one our DID's document names (a key becomes active only once the document names it), so only labels whose `src`
is our current DID are re-signed. Labels issued under a former DID (before `did link-pds` moved the labeler to
another DID, say) keep their original signatures, by the key that DID's document names, and are served as they
are; `labeler label reissue --from DID` issues them again under the current DID.

The keyring is re-read (one stat) before anything is re-signed, so a process whose periodic reload has not yet
seen another process's rotation never "re-signs" a new key's labels back to the old key. A row signed by a key
this keyring does not know, or does not hold as retired, is left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from labeler.keys import Keyring
from labeler.store.labels import LabelStore, StoredLabel, rows_to_stored, stored_to_rows


class Resigner:
    def __init__(self, store: LabelStore, keyring: Keyring, src: str) -> None:
        self.store = store
        self.keyring = keyring
        self.src = src

    async def current_rows(self, rows: Sequence[Any]) -> Sequence[Any]:
        """`current` for plain rows (`LabelStore.query_rows`: row[1] is src, row[9] the key id); the common case,
        every row signed by the active key or issued under a former DID (never re-signed), costs a comparison or
        two per row."""
        active_id, src = self.keyring.active()[0].id, self.src
        if all(row[9] == active_id or row[1] != src for row in rows):
            return rows
        return stored_to_rows(await self.current(rows_to_stored(rows)))

    async def current(self, rows: Sequence[StoredLabel]) -> list[StoredLabel]:
        active_info, key = self.keyring.active()
        if all(row.key_id == active_info.id or row.label.src != self.src for row in rows):
            return list(rows)  # nothing `_stale` could pick: no keyring reload, no conversion
        self.keyring.reload_if_changed(force=True)
        active_info, key = self.keyring.active()
        out: list[StoredLabel] = []
        refreshed: list[StoredLabel] = []
        stale_ids: dict[int, str] = {}
        for row in rows:
            if not self._stale(row, active_info.id):
                out.append(row)
                continue
            fresh = StoredLabel(seq=row.seq, label=row.label.signed(key), key_id=active_info.id)
            stale_ids[row.seq] = row.key_id
            refreshed.append(fresh)
            out.append(fresh)
        if refreshed:
            await self.store.replace_signatures(refreshed, stale_ids)
        return out

    def _stale(self, row: StoredLabel, active_id: str) -> bool:
        """Signed by one of our retired keys under our current DID: the only rows the active key may re-sign."""
        return row.key_id != active_id and row.label.src == self.src and self.keyring.is_retired(row.key_id)


async def resign_backlog(
    store: LabelStore, resigner: Resigner, *, batch: int = 500, progress: Callable[[int], None] | None = None
) -> int:
    """Re-sign every label of our DID not signed by the active key (`labeler keys resign`), in seq order and
    batches. Returns how many it re-signed (rows by keys this keyring does not hold as retired stay as they are)."""
    done, after = 0, 0
    while True:
        rows = await store.stale(resigner.src, resigner.keyring.active()[0].id, after, batch)
        if not rows:
            return done
        fresh = await resigner.current(rows)
        after = rows[-1].seq
        done += sum(1 for old, new in zip(rows, fresh, strict=True) if old.key_id != new.key_id)
        if progress is not None:
            progress(len(rows))
