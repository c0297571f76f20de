"""Label signing bytes and signatures: the indigo vector byte for byte, mutations, malleability, both curves."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from typing import Any

import pytest
from atproto_crypto.verify import verify_signature
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from vectors import json_cases, lines

from labeler.protocol.crypto import Curve, SigningKey, verify
from labeler.protocol.label import InvalidLabel, Label, check_value, verify_received

SIGNED = json_cases("labels/signed.json")


def _vector_label(case: dict[str, Any]) -> Label:
    sig = base64.b64decode(case["sig_base64"] + "==")
    return replace(Label.from_ipld(case["label"]), sig=sig)


@pytest.mark.parametrize("case", SIGNED)
def test_vector_signing_bytes_are_byte_exact(case: dict[str, Any]) -> None:
    label = _vector_label(case)
    assert label.signing_bytes().hex() == case["unsigned_cbor_hex"]
    assert hashlib.sha256(label.signing_bytes()).hexdigest() == case["sha256_hex"]


@pytest.mark.parametrize("case", SIGNED)
def test_vector_verifies_with_us_and_the_sdk(case: dict[str, Any]) -> None:
    label = _vector_label(case)
    assert label.verify(case["did_key"])
    assert verify_signature(case["did_key"], label.signing_bytes(), label.sig)
    assert verify_received(label.to_json(), case["did_key"])


@pytest.mark.parametrize("case", SIGNED)
@pytest.mark.parametrize(
    "change",
    [
        {"val": "bladerunner2"},
        {"neg": True},
        {"cts": "2024-10-23T17:51:19.129Z"},
        {"exp": "2030-01-01T00:00:00.000Z"},
        {"src": "did:plc:n3timvoib5nau7gvwd6cshaq"},
        {"uri": "did:plc:44ybard66vv44zksje25o7dy"},
        {"cid": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_any_changed_field_breaks_the_signature(case: dict[str, Any], change: dict[str, Any]) -> None:
    assert not replace(_vector_label(case), **change).verify(case["did_key"])


@pytest.mark.parametrize("case", SIGNED)
def test_received_fields_are_verified_as_received(case: dict[str, Any]) -> None:
    """`neg: false` added, or `ver` dropped, changes the signed bytes (protocol.md §1.2 item 6)."""
    served = _vector_label(case).to_json()
    assert verify_received(served, case["did_key"])
    assert not verify_received({**served, "neg": False}, case["did_key"])
    assert not verify_received({k: v for k, v in served.items() if k != "ver"}, case["did_key"])


@pytest.mark.parametrize("case", SIGNED)
def test_malleable_and_malformed_signatures_are_rejected(case: dict[str, Any]) -> None:
    label = _vector_label(case)
    sig = label.sig
    assert sig is not None
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    high_s = sig[:32] + (Curve.K256.order - s).to_bytes(32, "big")
    der = encode_dss_signature(r, s)
    padded = sig[:32] + b"\x00" + sig[32:]  # the SDK alone accepts this (sdk-notes.md §1)
    message = label.signing_bytes()
    assert verify_signature(case["did_key"], message, padded), "premise: the SDK misses the length check"
    for bad in (high_s, der, padded, sig[:63], b""):
        assert not verify(case["did_key"], message, bad)
        assert not replace(label, sig=bad).verify(case["did_key"])


@pytest.mark.parametrize("curve", list(Curve))
def test_our_signatures_are_low_s_and_verify_with_the_sdk(curve: Curve) -> None:
    key = SigningKey.generate(curve)
    base = Label(
        src="did:plc:abc", uri="at://did:plc:xyz/app.bsky.feed.post/3k", val="spam", cts="2024-01-01T00:00:00.000Z"
    )
    for i in range(200):
        label = replace(base, val=f"spam{'-x' * (i % 5)}").signed(key)
        assert label.sig is not None and len(label.sig) == 64
        assert int.from_bytes(label.sig[32:], "big") <= curve.order // 2
        assert verify_signature(key.did_key, label.signing_bytes(), label.sig)


@pytest.mark.parametrize("curve", list(Curve))
def test_key_pem_round_trip(curve: Curve) -> None:
    key = SigningKey.generate(curve)
    again = SigningKey.from_pem(key.to_pem())
    assert again.did_key == key.did_key
    assert key.did_key.startswith("did:key:zQ3s" if curve is Curve.K256 else "did:key:zDna")
    assert "PRIVATE" not in repr(key)


def test_unsigned_form_omits_false_neg_and_never_has_type() -> None:
    label = Label(src="did:plc:abc", uri="did:plc:xyz", val="spam", cts="2024-01-01T00:00:00.000Z")
    assert set(label.unsigned()) == {"ver", "src", "uri", "val", "cts"}
    assert replace(label, neg=True).unsigned()["neg"] is True


@pytest.mark.parametrize("value", lines("syntax/label_value_valid.txt"))
def test_valid_values(value: str) -> None:
    assert check_value(value) == value


@pytest.mark.parametrize("value", lines("syntax/label_value_invalid.txt"))
def test_invalid_values(value: str) -> None:
    with pytest.raises(InvalidLabel):
        check_value(value)


def test_value_length_limit_is_in_bytes() -> None:
    check_value("a" * 128)
    with pytest.raises(InvalidLabel):
        check_value("a" * 129)
