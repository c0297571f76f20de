"""Console sessions: a signed cookie, no server-side state.

The cookie holds `{"u": who, "e": expiry, "c": CSRF token, "v": credential tag}`, base64url JSON, then an
HMAC-SHA256 of it under a secret kept in the keys directory (`console-session.key`, 0600, made on first use and
shared by every process that shares the keys). `u` is empty before sign-in: the sign-in form has its CSRF token
too. `v` is an HMAC of the signed-in credential's stored form, so changing the admin password or removing or
re-adding a moderator ends their sessions at the next request (`labeler.console.auth` checks it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

SECRET_FILE: Final = "console-session.key"
LIFETIME: Final = 8 * 3600  # a working shift; then sign in again
_MAX_COOKIE: Final = 4096


@dataclass(frozen=True)
class Session:
    user: str  # "" before sign-in
    expires: int
    csrf: str
    tag: str


def load_secret(keys_dir: Path) -> bytes:
    """The signing secret, created (0600, exclusively, so concurrent first starts agree) if missing."""
    path = keys_dir / SECRET_FILE
    keys_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_bytes()
        if len(secret) < 32:
            raise ValueError(f"{path} is shorter than 32 bytes: remove it to make a new one") from None
        return secret
    with os.fdopen(fd, "wb") as file:
        secret = secrets.token_bytes(32)
        file.write(secret)
    return secret


class SessionCodec:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def tag(self, credential: str) -> str:
        """What a session remembers of the credential it was opened with (not the credential, nor its hash)."""
        return hmac.new(self._secret, b"credential\x00" + credential.encode(), hashlib.sha256).hexdigest()[:32]

    def new(self, user: str, tag: str, *, now: float | None = None) -> Session:
        return Session(user, int((now or time.time()) + LIFETIME), secrets.token_urlsafe(32), tag)

    def encode(self, session: Session) -> str:
        payload = json.dumps(
            {"u": session.user, "e": session.expires, "c": session.csrf, "v": session.tag}, separators=(",", ":")
        ).encode()
        body = base64.urlsafe_b64encode(payload).rstrip(b"=")
        return (body + b"." + base64.urlsafe_b64encode(self._sign(body)).rstrip(b"=")).decode()

    def decode(self, cookie: str, *, now: float | None = None) -> Session | None:
        """The session, or None if the cookie is malformed, forged or expired."""
        if len(cookie) > _MAX_COOKIE:
            return None
        body, _, signature = cookie.encode("ascii", "replace").partition(b".")
        try:
            if not hmac.compare_digest(_unb64(signature), self._sign(body)):
                return None
            data = json.loads(_unb64(body))
            session = Session(str(data["u"]), int(data["e"]), str(data["c"]), str(data["v"]))
        except (binascii.Error, ValueError, KeyError, TypeError):
            return None
        return session if session.expires > (now or time.time()) else None

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self._secret, b"session\x00" + body, hashlib.sha256).digest()


def _unb64(text: bytes) -> bytes:
    return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
