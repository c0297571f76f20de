"""`Label.to_cbor` writes the common label shape by hand; it must stay byte-identical to cbor2's canonical form."""

from __future__ import annotations

import random
import string

import cbor2
import pytest

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
