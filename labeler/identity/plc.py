"""did:plc operations (did-method-plc spec v0.1; protocol.md §5.3): build, encode, sign, verify, hash. No I/O.

An operation is the plain dict the PLC directory takes: `type`, `rotationKeys`, `verificationMethods`,
`alsoKnownAs`, `services`, `prev` and `sig`. It is signed by a rotation key over the DAG-CBOR of every other
field (ECDSA-SHA256, 64-byte low-S r‖s, base64url without padding). `prev` is the CID of the operation it
follows (null for genesis), and a new DID is derived from its signed genesis operation. Talking to a directory
is `labeler.identity.plc_directory`'s job.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import libipld

from labeler.identity.resolver import IdentityError
from labeler.protocol.crypto import SigningKey, verify

OPERATION_TYPE: Final = "plc_operation"
MAX_OPERATION_BYTES: Final = 7500
MAX_ROTATION_KEYS: Final = 5
LABEL_METHOD: Final = "atproto_label"
LABELER_SERVICE: Final = "atproto_labeler"
LABELER_SERVICE_TYPE: Final = "AtprotoLabeler"
_DAG_CBOR_SHA256_CID_PREFIX: Final = bytes([0x01, 0x71, 0x12, 0x20])  # CIDv1, dag-cbor, sha2-256, 32 bytes


class PlcError(IdentityError):
    """A PLC operation is invalid, or a directory refused it or could not be reached."""


@dataclass(frozen=True)
class PlcState:
    """What an operation sets, i.e. the directory's `GET /{did}/data` without the DID."""

    rotation_keys: tuple[str, ...]
    verification_methods: Mapping[str, str] = field(default_factory=dict)
    also_known_as: tuple[str, ...] = ()
    services: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlcState:
        """From `/data` or an operation (camelCase keys); PlcError if the shape is wrong."""
        try:
            return cls(
                rotation_keys=tuple(str(k) for k in data["rotationKeys"]),
                verification_methods={str(k): str(v) for k, v in data.get("verificationMethods", {}).items()},
                also_known_as=tuple(str(a) for a in data.get("alsoKnownAs", ())),
                services={
                    str(name): {"type": str(s["type"]), "endpoint": str(s["endpoint"])}
                    for name, s in data.get("services", {}).items()
                },
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise PlcError(f"not PLC document data: missing or malformed {exc}") from None

    def with_labeler(self, label_did_key: str, endpoint: str) -> PlcState:
        """Our two entries added or replaced (`atproto_label`, `atproto_labeler`); everything else kept."""
        service = {"type": LABELER_SERVICE_TYPE, "endpoint": endpoint}
        return replace(
            self,
            verification_methods={**self.verification_methods, LABEL_METHOD: label_did_key},
            services={**self.services, LABELER_SERVICE: service},
        )

    def merged_with(self, other: PlcState) -> PlcState:
        """Entries of `other` that this state lacks, added after ours (ours win on a clash and keep their order)."""
        return PlcState(
            rotation_keys=_union(self.rotation_keys, other.rotation_keys),
            verification_methods={**other.verification_methods, **self.verification_methods},
            also_known_as=_union(self.also_known_as, other.also_known_as),
            services={**other.services, **self.services},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "rotationKeys": list(self.rotation_keys),
            "verificationMethods": dict(self.verification_methods),
            "alsoKnownAs": list(self.also_known_as),
            "services": {name: dict(s) for name, s in self.services.items()},
        }

    def operation(self, prev: str | None) -> dict[str, Any]:
        """The unsigned operation that sets this state after `prev` (None: a genesis operation)."""
        if not 1 <= len(self.rotation_keys) <= MAX_ROTATION_KEYS:
            raise PlcError(f"a PLC operation needs 1–{MAX_ROTATION_KEYS} rotation keys, not {len(self.rotation_keys)}")
        return {"type": OPERATION_TYPE, **self.to_json(), "prev": prev}


def _union(first: Sequence[str], second: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*first, *second]))


def _unsigned_bytes(operation: Mapping[str, Any]) -> bytes:
    return bytes(libipld.encode_dag_cbor({k: v for k, v in operation.items() if k != "sig"}))


def sign_operation(operation: Mapping[str, Any], rotation_key: SigningKey) -> dict[str, Any]:
    """The operation with `sig`; PlcError if the key is not one of its rotation keys or it is too large."""
    if rotation_key.did_key not in operation.get("rotationKeys", ()):
        raise PlcError(f"{rotation_key.did_key} is not one of the operation's rotation keys")
    signature = rotation_key.sign(_unsigned_bytes(operation))
    signed = {**operation, "sig": base64.urlsafe_b64encode(signature).rstrip(b"=").decode()}
    size = len(encode(signed))
    if size > MAX_OPERATION_BYTES:
        raise PlcError(f"the PLC operation is {size} bytes; the directory accepts at most {MAX_OPERATION_BYTES}")
    return signed


def verify_operation(operation: Mapping[str, Any], did_key: str) -> bool:
    """Whether `sig` is a valid low-S signature by `did_key` over the rest of the operation."""
    sig = operation.get("sig")
    if not isinstance(sig, str):
        return False
    try:
        signature = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    except (ValueError, binascii.Error):
        return False
    return verify(did_key, _unsigned_bytes(operation), signature)


def encode(operation: Mapping[str, Any]) -> bytes:
    """Deterministic DAG-CBOR of the whole (signed) operation: what `prev` CIDs and DIDs are hashes of."""
    return bytes(libipld.encode_dag_cbor(dict(operation)))


def operation_cid(operation: Mapping[str, Any]) -> str:
    """The CID (v1, dag-cbor, sha2-256, base32) a following operation names as `prev`."""
    return str(libipld.encode_cid(_DAG_CBOR_SHA256_CID_PREFIX + hashlib.sha256(encode(operation)).digest()))


def did_for_genesis(operation: Mapping[str, Any]) -> str:
    """`did:plc:` + the first 24 characters of base32(sha256(signed genesis operation))."""
    if operation.get("prev") is not None or "sig" not in operation:
        raise PlcError("a DID is derived from a signed genesis operation (prev = null)")
    digest = hashlib.sha256(encode(operation)).digest()
    return "did:plc:" + base64.b32encode(digest).decode().lower()[:24]
