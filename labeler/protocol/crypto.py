"""ECDSA keys and signatures as atproto uses them (protocol.md §1.2, SPEC-CRYPTO).

Signatures are 64 raw bytes r‖s over SHA-256 of the message, always low-S. k256 signs and verifies with
coincurve (libsecp256k1: ~10× faster than OpenSSL, low-S by construction, and it refuses high-S when verifying);
p256 with `cryptography`, normalising S when signing and refusing high-S when verifying. A did:key is parsed (the
`atproto` SDK's multibase decoding) once and its public key kept, since the same few keys verify again and again.
Key storage and key ids live in `labeler.keys`, not here.
"""

from __future__ import annotations

import secrets
from enum import StrEnum
from functools import lru_cache
from typing import Final

import coincurve
from atproto_crypto.consts import P256_CURVE_ORDER, SECP256K1_CURVE_ORDER
from atproto_crypto.did import format_did_key, format_multikey, parse_did_key
from coincurve.ecdsa import cdata_to_der, deserialize_compact
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

SIGNATURE_LENGTH: Final = 64


class Curve(StrEnum):
    """The two curves atproto allows, named as the project's CLI and key files name them."""

    K256 = "k256"
    P256 = "p256"

    @property
    def jwt_alg(self) -> str:
        return "ES256K" if self is Curve.K256 else "ES256"

    @property
    def order(self) -> int:
        return SECP256K1_CURVE_ORDER if self is Curve.K256 else P256_CURVE_ORDER

    @property
    def _ec_curve(self) -> ec.EllipticCurve:
        return ec.SECP256K1() if self is Curve.K256 else ec.SECP256R1()

    @classmethod
    def from_jwt_alg(cls, alg: str) -> Curve:
        for curve in cls:
            if curve.jwt_alg == alg:
                return curve
        raise ValueError(f"unsupported JWT alg {alg!r}")


class SigningKey:
    """A private key that signs atproto messages. Construct with `generate`, `from_secret` or `from_pem`."""

    __slots__ = ("_ck", "_pk", "curve", "public_key")

    curve: Curve
    public_key: bytes  # 33-byte compressed point

    def __init__(self, curve: Curve, secret: bytes) -> None:
        if len(secret) != 32:
            raise ValueError("a private key is 32 bytes")
        value = int.from_bytes(secret, "big")
        if not 0 < value < curve.order:
            raise ValueError("private key out of range for the curve")
        self.curve = curve
        self._pk = ec.derive_private_key(value, curve._ec_curve)
        self._ck = coincurve.PrivateKey(secret) if curve is Curve.K256 else None
        self.public_key = self._pk.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
        )

    @classmethod
    def generate(cls, curve: Curve = Curve.K256) -> SigningKey:
        while True:
            secret = secrets.token_bytes(32)
            if 0 < int.from_bytes(secret, "big") < curve.order:
                return cls(curve, secret)

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("not an elliptic-curve private key")
        if isinstance(key.curve, ec.SECP256K1):
            curve = Curve.K256
        elif isinstance(key.curve, ec.SECP256R1):
            curve = Curve.P256
        else:
            raise ValueError(f"unsupported curve {key.curve.name}")
        return cls(curve, key.private_numbers().private_value.to_bytes(32, "big"))

    def to_pem(self) -> bytes:
        return self._pk.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def did_key(self) -> str:
        """`did:key:z…`, the form PLC operations and keyrings use."""
        return format_did_key(self.curve.jwt_alg, self.public_key)

    @property
    def multikey(self) -> str:
        """`z…`, the `publicKeyMultibase` of a Multikey verification method."""
        return format_multikey(self.curve.jwt_alg, self.public_key)

    def sign(self, message: bytes) -> bytes:
        """ECDSA-SHA256 over `message`: 64 bytes r‖s, low-S."""
        if self._ck is not None:
            # libsecp256k1 always emits low-S; the recoverable form is already r‖s‖v.
            return self._ck.sign_recoverable(message)[:SIGNATURE_LENGTH]
        r, s = decode_dss_signature(self._pk.sign(message, ec.ECDSA(hashes.SHA256())))
        if s > self.curve.order // 2:
            s = self.curve.order - s
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def __repr__(self) -> str:  # never show secret material
        return f"SigningKey({self.curve.value}, {self.did_key})"


def verify(did_key: str, message: bytes, signature: bytes, *, allow_high_s: bool = False) -> bool:
    """Check a 64-byte r‖s signature against a `did:key`; False for any malformed key or signature.

    Label signatures must be low-S; service-auth JWTs are verified leniently (high-S allowed) like the
    reference implementations do, which is what `allow_high_s` is for.
    """
    if len(signature) != SIGNATURE_LENGTH:
        return False
    try:
        curve, key = _public_key(did_key)
    except ValueError:
        return False
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if not (0 < r < curve.order and 0 < s < curve.order):
        return False
    if s > curve.order // 2:
        if not allow_high_s:
            return False
        s = curve.order - s
    if isinstance(key, coincurve.PublicKey):
        compact = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return key.verify(cdata_to_der(deserialize_compact(compact)), message)
    try:
        key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def key_curve(did_key: str) -> Curve:
    """The curve of a `did:key`; raises ValueError for keys atproto does not allow."""
    return _public_key(did_key)[0]


@lru_cache(maxsize=16_384)
def _public_key(did_key: str) -> tuple[Curve, coincurve.PublicKey | ec.EllipticCurvePublicKey]:
    try:
        parsed = parse_did_key(did_key)
        curve = Curve.from_jwt_alg(parsed.jwt_alg)
        if curve is Curve.K256:
            return curve, coincurve.PublicKey(parsed.key_bytes)
        return curve, ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), parsed.key_bytes)
    except Exception as exc:  # the SDK and both libraries raise assorted errors on malformed keys
        raise ValueError(f"not a usable did:key: {did_key[:100]!r}") from exc
