"""PLC operations: byte-for-byte agreement with Bluesky's @did-plc/lib, signatures, DID derivation, limits.

`plc_vector.json` was produced by @did-plc/lib (`signOperation`, `didForCreateOp`, `createUpdateOp`) from the
fixed keys it names. Both sides sign deterministically (RFC 6979), so our operations must equal it exactly.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from labeler.identity.plc import (
    MAX_OPERATION_BYTES,
    PlcError,
    PlcState,
    did_for_genesis,
    encode,
    operation_cid,
    sign_operation,
    verify_operation,
)
from labeler.protocol.crypto import Curve, SigningKey

VECTOR = json.loads((Path(__file__).parent / "plc_vector.json").read_text())
ROTATION = SigningKey(Curve.K256, bytes.fromhex(VECTOR["rotation_key_hex"]))
LABEL = SigningKey(Curve.P256, bytes.fromhex(VECTOR["label_key_hex"]))
ENDPOINT = "https://labeler.example.com"


def genesis_state(rotation: SigningKey = ROTATION, label: SigningKey = LABEL) -> PlcState:
    return PlcState(rotation_keys=(rotation.did_key,), also_known_as=("at://labeler.example.com",)).with_labeler(
        label.did_key, ENDPOINT
    )


def test_genesis_matches_did_plc_lib() -> None:
    genesis = sign_operation(genesis_state().operation(prev=None), ROTATION)
    assert genesis == VECTOR["genesis"]
    assert did_for_genesis(genesis) == VECTOR["did"]
    assert operation_cid(genesis) == VECTOR["genesis_cid"]


def test_update_matches_did_plc_lib() -> None:
    genesis = VECTOR["genesis"]
    state = PlcState.from_json(genesis).with_labeler(ROTATION.did_key, ENDPOINT)
    update = sign_operation(state.operation(prev=operation_cid(genesis)), ROTATION)
    assert update == VECTOR["update"]


def test_did_derivation_is_reproducible_and_key_dependent() -> None:
    first = did_for_genesis(sign_operation(genesis_state().operation(None), ROTATION))
    again = did_for_genesis(sign_operation(genesis_state().operation(None), ROTATION))
    other = SigningKey.generate()
    different = did_for_genesis(sign_operation(genesis_state(rotation=other).operation(None), other))
    assert first == again == VECTOR["did"]
    assert different != first and len(different) == len("did:plc:") + 24


@pytest.mark.parametrize("curve", list(Curve))
def test_sign_verify_with_both_curves(curve: Curve) -> None:
    key = SigningKey.generate(curve)
    op = sign_operation(genesis_state(rotation=key).operation(None), key)
    raw = base64.urlsafe_b64decode(op["sig"] + "==")
    assert "=" not in op["sig"] and len(raw) == 64
    assert int.from_bytes(raw[32:], "big") <= curve.order // 2  # low-S
    assert verify_operation(op, key.did_key)
    assert not verify_operation(op, SigningKey.generate(curve).did_key)
    assert not verify_operation({**op, "alsoKnownAs": ["at://evil.example.com"]}, key.did_key)
    high_s = raw[:32] + (curve.order - int.from_bytes(raw[32:], "big")).to_bytes(32, "big")
    assert not verify_operation({**op, "sig": base64.urlsafe_b64encode(high_s).decode().rstrip("=")}, key.did_key)
    assert not verify_operation({**op, "sig": "not base64!"}, key.did_key)


def test_only_a_listed_rotation_key_signs() -> None:
    with pytest.raises(PlcError, match="not one of the operation's rotation keys"):
        sign_operation(genesis_state().operation(None), SigningKey.generate())


def test_operation_size_limit() -> None:
    handles = tuple(f"at://{'x' * 60}-{i}.example.com" for i in range(150))
    big = PlcState(rotation_keys=(ROTATION.did_key,), also_known_as=handles).operation(None)
    assert len(encode(big)) > MAX_OPERATION_BYTES
    with pytest.raises(PlcError, match="at most 7500"):
        sign_operation(big, ROTATION)
    normal = sign_operation(genesis_state().operation(None), ROTATION)
    assert len(encode(normal)) < 1000


def test_rotation_key_count_is_bounded() -> None:
    with pytest.raises(PlcError, match="1–5 rotation keys"):
        PlcState(rotation_keys=()).operation(None)
    keys = tuple(SigningKey.generate().did_key for _ in range(6))
    with pytest.raises(PlcError, match="1–5 rotation keys"):
        PlcState(rotation_keys=keys).operation(None)


def test_did_needs_a_signed_genesis() -> None:
    unsigned = genesis_state().operation(None)
    with pytest.raises(PlcError):
        did_for_genesis(unsigned)
    with pytest.raises(PlcError):
        did_for_genesis({**sign_operation(unsigned, ROTATION), "prev": VECTOR["genesis_cid"]})


def test_with_labeler_replaces_ours_and_keeps_the_rest() -> None:
    existing: dict[str, Any] = {
        "rotationKeys": ["did:key:pds", "did:key:mine"],
        "verificationMethods": {"atproto": "did:key:repo", "atproto_label": "did:key:old"},
        "alsoKnownAs": ["at://alice.test"],
        "services": {
            "atproto_pds": {"type": "AtprotoPersonalDataServer", "endpoint": "https://pds.example.com"},
            "atproto_labeler": {"type": "AtprotoLabeler", "endpoint": "https://old.example.com"},
        },
    }
    state = PlcState.from_json(existing).with_labeler("did:key:new", ENDPOINT)
    assert state.to_json() == {
        **existing,
        "verificationMethods": {"atproto": "did:key:repo", "atproto_label": "did:key:new"},
        "services": {**existing["services"], "atproto_labeler": {"type": "AtprotoLabeler", "endpoint": ENDPOINT}},
    }


def test_merge_keeps_current_entries_and_order_and_adds_missing_ones() -> None:
    current = PlcState(
        rotation_keys=("did:key:mine", "did:key:pds"),
        verification_methods={"atproto": "did:key:repo"},
        also_known_as=("at://alice.test",),
        services={"atproto_pds": {"type": "AtprotoPersonalDataServer", "endpoint": "https://pds.example.com"}},
    )
    recommended = PlcState(
        rotation_keys=("did:key:pds",),
        verification_methods={"atproto": "did:key:other", "extra": "did:key:extra"},
        also_known_as=("at://alice.test", "at://alias.test"),
        services={"atproto_pds": {"type": "AtprotoPersonalDataServer", "endpoint": "https://elsewhere.example"}},
    )
    merged = current.merged_with(recommended)
    assert merged.rotation_keys == ("did:key:mine", "did:key:pds")
    assert merged.verification_methods == {"atproto": "did:key:repo", "extra": "did:key:extra"}
    assert merged.also_known_as == ("at://alice.test", "at://alias.test")
    assert merged.services == current.services


def test_from_json_rejects_other_shapes() -> None:
    with pytest.raises(PlcError):
        PlcState.from_json({"verificationMethods": {}})
    with pytest.raises(PlcError):
        PlcState.from_json({"rotationKeys": [], "services": {"x": {"type": "T"}}})
