"""Private keys made elsewhere, as other atproto tools write them, read into a `SigningKey` (`labeler keys import`).

Accepted: PEM (PKCS#8 or SEC1, as OpenSSL writes it), 64 hex digits (Ozone's `OZONE_SIGNING_KEY_HEX`, the
reference PDS's key env vars; the text does not say the curve: k256 unless the caller says p256), and multibase
(`z…`, base58btc of a multicodec-prefixed private key, as `goat key generate` prints it; the prefix names the
curve). Error messages describe the input's shape, never its content: the input is secret.
"""

from __future__ import annotations

import binascii
import re
from typing import Final

from atproto_crypto.multibase import multibase_to_bytes

from labeler.protocol.crypto import Curve, SigningKey

#: Multicodec varints of private keys: secp256k1-priv (0x1301) and p256-priv (0x1306).
_MULTICODEC_PRIVATE: Final = {bytes([0x81, 0x26]): Curve.K256, bytes([0x86, 0x26]): Curve.P256}
_HEX: Final = re.compile(r"(?:0x)?[0-9a-fA-F]{64}")


class KeyFormatError(ValueError):
    """The text is not a private key in a format we read."""


def parse_private_key(text: str, curve: Curve | None = None) -> SigningKey:
    """The key in `text`. `curve` is a hex key's curve (default k256) and must agree with a PEM or multibase key's."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = _from_pem(text)
    elif _HEX.fullmatch(text):
        key = _from_secret(curve or Curve.K256, binascii.unhexlify(text.removeprefix("0x")))
    elif text.startswith("z"):
        key = _from_multibase(text)
    else:
        raise KeyFormatError("not a private key in PEM, 64 hex digits or multibase (z…)")
    if curve is not None and key.curve is not curve:
        raise KeyFormatError(f"the key is {key.curve.value}, not {curve.value}")
    return key


def _from_secret(curve: Curve, secret: bytes) -> SigningKey:
    try:
        return SigningKey(curve, secret)
    except ValueError as exc:
        raise KeyFormatError(f"not a valid {curve.value} private key: {exc}") from None


def _from_pem(text: str) -> SigningKey:
    try:
        return SigningKey.from_pem(text.encode())
    except (ValueError, TypeError) as exc:
        reason = str(exc) if isinstance(exc, ValueError) and "curve" in str(exc) else "unreadable or encrypted"
        raise KeyFormatError(f"not a usable PEM private key ({reason})") from None


def _from_multibase(text: str) -> SigningKey:
    try:
        data = multibase_to_bytes(text)
    except Exception:  # the SDK raises assorted errors on bad base58
        raise KeyFormatError("not valid multibase (base58btc, z…)") from None
    curve = _MULTICODEC_PRIVATE.get(data[:2])
    if curve is None:
        raise KeyFormatError("multibase data is not a secp256k1 or p256 private key (multicodec 0x1301/0x1306)")
    return _from_secret(curve, data[2:])
