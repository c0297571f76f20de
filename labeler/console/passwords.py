"""Moderator credentials at rest: scrypt (memory-hard, in the standard library) with a random salt per credential.

Stored as `scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>`, so the cost can be raised later without breaking
the hashes already stored. The default is OWASP's scrypt minimum (n=2^17, r=8, p=1: 128 MiB and a few hundred
milliseconds per check), which is why checks run in a worker thread, one at a time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import threading
from typing import Final

LOG2_N: Final = 17
R: Final = 8
P: Final = 1
_SALT_BYTES: Final = 16
_HASH_BYTES: Final = 32
_MAX_LOG2_N: Final = 20  # a stored hash cannot make a check take more than 1 GiB
_ONE_AT_A_TIME = threading.Lock()  # each check holds 128 MiB: never let a burst of sign-ins multiply that


def _scrypt(secret: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(
        secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=129 * r * n * p + (1 << 20), dklen=_HASH_BYTES
    )


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(secret, salt, LOG2_N, R, P)
    encode = base64.b64encode
    return f"scrypt${LOG2_N}${R}${P}${encode(salt).decode()}${encode(digest).decode()}"


def verify_secret(secret: str, stored: str) -> bool:
    """True if `secret` hashes to `stored`; False for a malformed or unsupported stored hash."""
    try:
        scheme, log2_n, r, p, salt, digest = stored.split("$")
        params = int(log2_n), int(r), int(p)
        if scheme != "scrypt" or not (1 <= params[0] <= _MAX_LOG2_N and 1 <= params[1] <= 32 and 1 <= params[2] <= 4):
            return False
        expected = base64.b64decode(digest, validate=True)
        return hmac.compare_digest(_scrypt(secret, base64.b64decode(salt, validate=True), *params), expected)
    except ValueError:
        return False


async def verify_secret_async(secret: str, stored: str) -> bool:
    """`verify_secret` in a worker thread, one check at a time in this process."""

    def one_at_a_time() -> bool:
        with _ONE_AT_A_TIME:
            return verify_secret(secret, stored)

    return await asyncio.to_thread(one_at_a_time)


#: Checked against when the name is unknown, so that an unknown name takes as long as a wrong credential.
DECOY_HASH: Final = "scrypt$17$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
