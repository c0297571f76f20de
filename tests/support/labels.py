"""Labels written straight into a labeler's table, signed by any key: what a buggy or older labeler left behind."""

from __future__ import annotations

from labeler.protocol.crypto import SigningKey
from labeler.protocol.label import Label
from labeler.service import Labeler
from labeler.store.schema import labels


async def seed_labels(labeler: Labeler, rows: list[Label], signer: SigningKey | None = None) -> None:
    """`rows` after the head, signed by `signer` (default: the active key) yet recorded as signed by the active key,
    so nothing re-signs them on the way out: what a consumer gets is what is stored."""
    info, active = labeler.keyring.active()
    head = await labeler.store.head()
    async with labeler.engine.begin() as conn:
        for seq, label in enumerate((row.signed(signer or active) for row in rows), start=head + 1):
            await conn.execute(
                labels.insert().values(
                    seq=seq, src=label.src, uri=label.uri, cid=label.cid or "", val=label.val, neg=label.neg,
                    cts=label.cts, exp=label.exp, sig=label.sig, key_id=info.id,
                )
            )  # fmt: skip
