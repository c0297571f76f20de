"""`labeler label reissue --from DID`: the labels a former DID of this labeler issued, issued again under the
current DID.

After a DID change (`did link-pds` moving the labeler to an account's DID, say) the labels issued under the former
DID stay stored and served with their original signatures, by the key that DID's document names; they are never
re-signed with a key it does not name. Consumers who subscribe to the new DID look for labels whose `src` is the
new DID, though, so an operator who wants the old decisions to carry over re-issues them: each label of the former
DID still in force (not a negation, not expired) that the current DID does not already carry for the same
(uri, cid, val), positive or negated, is written anew through the writer: a new seq, a new `cts`, the active key,
and an audit entry naming the former label. Running it again finds nothing left to do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from labeler.labels.writer import LabelRequest, LabelWriter
from labeler.protocol import syntax
from labeler.store.labels import LabelStore, StoredLabel


@dataclass
class Reissued:
    written: int = 0
    already: int = 0  # the current DID already carries the same (uri, cid, val)
    not_in_force: int = 0  # negations and expired labels


async def reissue(
    store: LabelStore,
    writer: LabelWriter,
    former: str,
    *,
    batch: int = 500,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Reissued:
    """Re-issue `former`'s labels under `writer.src`, in seq order and batches."""
    counts = Reissued()
    async for rows in store.query_pages(["*"], [former], page=batch):
        in_force = [row for row in rows if _in_force(row)]
        counts.not_in_force += len(rows) - len(in_force)
        carried = await _carried(store, writer.src, [row.label.uri for row in in_force])
        todo = [row for row in in_force if (row.label.uri, row.label.cid, row.label.val) not in carried]
        counts.already += len(in_force) - len(todo)
        if todo and not dry_run:
            await writer.write([_request(row, former) for row in todo])
        counts.written += len(todo)
        if progress is not None:
            progress(len(rows))
    return counts


def _in_force(row: StoredLabel) -> bool:
    label = row.label
    return not label.neg and (label.exp is None or syntax.parse_datetime(label.exp) > datetime.now(UTC))


async def _carried(store: LabelStore, src: str, uris: list[str]) -> set[tuple[str, str | None, str]]:
    """(uri, cid, val) of every current label of `src` on these subjects, negations included."""
    if not uris:
        return set()  # no patterns would be no condition at all
    return {(r.label.uri, r.label.cid, r.label.val) async for r in store.iter_query(sorted(set(uris)), [src])}


def _request(row: StoredLabel, former: str) -> LabelRequest:
    label = row.label
    return LabelRequest(
        uri=label.uri,
        val=label.val,
        cid=label.cid,
        exp=label.exp,
        actor="cli",
        via="reissue",
        reason=f"re-issued from {former} (seq {row.seq}) after a DID change",
    )
