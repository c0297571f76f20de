"""Labels and stream frames are written by hand (`cbor_parts`, `label_frame`); they must stay byte-identical to
cbor2's canonical form."""

from __future__ import annotations

import random
import string

import cbor2
import pytest

from labeler.labels.hub import encode_row_frame
from labeler.protocol.frames import HEADER_LABELS
from labeler.protocol.label import Label

ALPHABET = string.ascii_letters + "é😀:/._-"


def _text(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(length))


def test_fast_cbor_equals_cbor2_canonical_for_random_labels() -> None:
    rng = random.Random(20261121)
    for i in range(3000):
        fields: dict[str, object] = {
            "src": _text(rng, rng.choice([0, 5, 23, 24, 255, 256])),
            "uri": _text(rng, rng.choice([1, 40, 100, 70_000] if i % 500 == 0 else [1, 40, 100])),
            "val": _text(rng, rng.choice([1, 3, 4, 23, 24])),
            "cts": _text(rng, 24),
        }
        if rng.random() < 0.5:
            fields["cid"] = _text(rng, 59)
        if rng.random() < 0.3:
            fields["exp"] = _text(rng, 24)
        if rng.random() < 0.3:
            fields["neg"] = True
        if rng.random() < 0.9:
            fields["sig"] = rng.randbytes(rng.choice([0, 23, 24, 64, 300]))
        if rng.random() < 0.05:
            fields["ver"] = rng.choice([0, 1, 23, 24, 1000, -1])
        label = Label(**fields)  # type: ignore[arg-type]
        assert label.to_cbor() == cbor2.dumps(label.to_ipld(), canonical=True), fields


def test_unencodable_text_still_raises() -> None:
    label = Label(src="did:plc:x", uri="\ud800", val="a", cts="2024-01-01T00:00:00Z")
    with pytest.raises(UnicodeEncodeError):
        label.to_cbor()


def test_the_common_shape_equals_cbor2_canonical_at_its_edges() -> None:
    """Nearly every label has no cid, exp or neg and a 64-byte signature: written without a decision per field, for
    strings up to 255 UTF-8 bytes (one-byte length heads); longer ones and other signatures take the general path."""
    rng = random.Random(20261122)
    for _ in range(3000):
        label = Label(
            src=_text(rng, rng.choice([5, 23, 24, 40])),
            uri=_text(rng, rng.choice([1, 23, 24, 60, 85, 200, 255, 256, 300])),
            val=_text(rng, rng.choice([1, 4, 24])),
            cts=_text(rng, rng.choice([24, 85, 255, 256])),
            sig=rng.randbytes(rng.choice([64, 64, 64, 63, 65])),
        )
        assert label.to_cbor() == cbor2.dumps(label.to_ipld(), canonical=True), label


def test_a_frame_from_a_store_row_equals_cbor2_canonical() -> None:
    """Backfill frames are written straight from database rows (cid '' when absent, neg as stored)."""
    rng = random.Random(5)
    for _ in range(2000):
        cid = rng.choice(["", "", "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"])
        exp = rng.choice([None, None, "2027-01-01T00:00:00.000Z"])
        neg = rng.choice([False, False, True, 0, 1])
        seq = rng.choice([1, 23, 24, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32, 2**53 - 1])
        row = (seq, "did:plc:abc", _text(rng, rng.choice([10, 100, 300])), cid, "spam", neg,
               "2026-11-22T00:00:00.000Z", exp, rng.randbytes(64), "key-1")  # fmt: skip
        label = Label(row[1], row[2], row[4], row[6], cid or None, bool(neg), exp, row[8])
        body = {"seq": seq, "labels": [label.to_ipld()]}
        assert encode_row_frame(row) == HEADER_LABELS + cbor2.dumps(body, canonical=True), row
