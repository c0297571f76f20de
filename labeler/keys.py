"""Label signing keys on disk: key files (0600) and a keyring naming the active key and the retired ones.

Layout of the keys directory (mode 0700):
    keyring.json   {"active": "<id>", "keys": [{"id", "curve", "did_key", "file", "created_at", "retired_at"}]}
    <id>.pem       PKCS#8 private key, mode 0600
Every label row records the id of the key that signed it, so a rotation can re-sign stale labels lazily. Private
key material is never logged or printed; only did:keys and ids are. A running server picks up a keyring changed by
another process (`labeler keys rotate`) within `RELOAD_INTERVAL` seconds. Keys that are not label keys (a did:plc
rotation key) are single PEM files beside it (`write_key_file` / `read_key_file`), never in the keyring.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Final

from labeler.protocol import syntax
from labeler.protocol.crypto import Curve, SigningKey

KEYRING_FILE: Final = "keyring.json"
ROTATION_KEY_FILE: Final = "rotation.pem"
#: Seconds between checks of keyring.json for changes made by another process.
RELOAD_INTERVAL: Final = 1.0

log = logging.getLogger(__name__)


class KeyringError(Exception):
    """The keyring is missing, unreadable, or does not hold the requested key."""


@dataclass(frozen=True)
class KeyInfo:
    id: str
    curve: str
    did_key: str
    file: str
    created_at: str
    retired_at: str | None = None

    @property
    def multikey(self) -> str:
        return self.did_key.removeprefix("did:key:")


def key_id_for(key: SigningKey) -> str:
    """A short, stable id: curve plus a fingerprint of the public key."""
    return f"{key.curve.value}-{hashlib.sha256(key.public_key).hexdigest()[:12]}"


def private_directory(directory: Path) -> Path:
    """Create the keys directory 0700, or make an existing one 0700 (a fresh clone's `keys/` is 0755, as git
    leaves it): key files are 0600, but a listable folder still shows who holds which key. One we cannot
    tighten (not ours, read-only) is refused with what to do."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & 0o077:
        try:
            directory.chmod(0o700)
        except OSError as exc:
            raise KeyringError(
                f"keys directory {directory} is readable by others (mode {mode:04o}) and cannot be made private "
                f"({exc.strerror}); run `chmod 700 {directory}` as its owner"
            ) from None
        log.info("made the keys directory %s private (mode %04o → 0700)", directory, mode)
    return directory


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def write_key_file(path: Path, key: SigningKey) -> None:
    """A standalone private key file (mode 0600 in a 0700 folder); refuses to overwrite one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        _write_private(path, key.to_pem())
    except FileExistsError:
        raise KeyringError(f"{path} already exists; not overwriting a private key") from None


def read_key_file(path: Path) -> SigningKey:
    try:
        return SigningKey.from_pem(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise KeyringError(f"cannot load key file {path}: {exc}") from None


class Keyring:
    """The keys directory. Load with `Keyring.open(dir)`; mutating methods persist immediately."""

    def __init__(self, directory: Path, active: str | None, keys: list[KeyInfo]) -> None:
        self.directory = directory
        self._active = active
        self._keys = {k.id: k for k in keys}
        self._loaded: dict[str, SigningKey] = {}
        self._stamp = self._file_stamp()
        self._checked_at = time.monotonic()

    @classmethod
    def open(cls, directory: Path) -> Keyring:
        path = directory / KEYRING_FILE
        if not path.exists():
            return cls(directory, None, [])
        private_directory(directory)
        try:
            data = json.loads(path.read_text())
            keys = [KeyInfo(**entry) for entry in data["keys"]]
            return cls(directory, data.get("active"), keys)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyringError(f"cannot read {path}: {exc}") from None

    def _save(self) -> None:
        private_directory(self.directory)
        payload = {"active": self._active, "keys": [asdict(k) for k in self._keys.values()]}
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".keyring-")
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, self.directory / KEYRING_FILE)
        self._stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = (self.directory / KEYRING_FILE).stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_ino, st.st_size

    def reload_if_changed(self, *, force: bool = False) -> bool:
        """Re-read keyring.json if another process replaced it; checks at most once per RELOAD_INTERVAL unless
        `force`. A keyring that cannot be read keeps the current state (signing goes on) and is logged."""
        now = time.monotonic()
        if not force and now - self._checked_at < RELOAD_INTERVAL:
            return False
        self._checked_at = now
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            fresh = Keyring.open(self.directory)
        except KeyringError as exc:
            log.warning("keeping the loaded keyring: %s", exc)
            return False
        self._active, self._keys = fresh._active, fresh._keys
        return True

    def all_keys(self) -> list[KeyInfo]:
        return sorted(self._keys.values(), key=lambda k: k.created_at)

    def info(self, key_id: str) -> KeyInfo:
        try:
            return self._keys[key_id]
        except KeyError:
            raise KeyringError(f"no key {key_id!r} in {self.directory}") from None

    def is_retired(self, key_id: str) -> bool:
        """Whether `key_id` is one of ours that was active once and has been replaced."""
        info = self._keys.get(key_id)
        return info is not None and info.retired_at is not None

    @property
    def active_id(self) -> str | None:
        return self._active

    def active(self) -> tuple[KeyInfo, SigningKey]:
        self.reload_if_changed()
        if self._active is None:
            raise KeyringError(f"no active label key in {self.directory}; run `labeler keys generate`")
        return self.info(self._active), self.signing_key(self._active)

    def signing_key(self, key_id: str) -> SigningKey:
        if key_id not in self._loaded:
            info = self.info(key_id)
            path = self.directory / info.file
            try:
                key = SigningKey.from_pem(path.read_bytes())
            except (OSError, ValueError) as exc:
                raise KeyringError(f"cannot load key {key_id}: {exc}") from None
            if key.did_key != info.did_key:
                raise KeyringError(f"key file {path} does not match the keyring's did:key for {key_id}")
            self._loaded[key_id] = key
        return self._loaded[key_id]

    def generate(self, curve: Curve = Curve.K256, *, activate: bool | None = None) -> KeyInfo:
        """Create and store a new key; it becomes active when asked to, or when there is no active key yet."""
        return self.add(SigningKey.generate(curve), activate=activate)

    def add(self, key: SigningKey, *, activate: bool | None = None) -> KeyInfo:
        """Store `key` (generated here, or made elsewhere: `labeler keys import`); active as for `generate`.
        A key already in the keyring is refused rather than stored twice."""
        key_id = key_id_for(key)
        if key_id in self._keys:
            raise KeyringError(f"{key_id} ({key.did_key}) is already in {self.directory}")
        private_directory(self.directory)
        info = KeyInfo(
            id=key_id, curve=key.curve.value, did_key=key.did_key, file=f"{key_id}.pem", created_at=syntax.now()
        )
        try:
            _write_private(self.directory / info.file, key.to_pem())
        except FileExistsError:
            raise KeyringError(
                f"{self.directory / info.file} exists but is not in the keyring; not overwriting"
            ) from None
        self._keys[key_id] = info
        self._loaded[key_id] = key
        if activate or (activate is None and self._active is None):
            return self.activate(key_id)  # the previous active key, if any, is retired
        self._save()
        return info

    def activate(self, key_id: str) -> KeyInfo:
        """Make `key_id` the signing key; the previous active key is kept, marked retired."""
        info = self.info(key_id)
        self.signing_key(key_id)  # refuse to activate a key we cannot load
        now = syntax.now()
        if self._active and self._active != key_id:
            self._keys[self._active] = replace(self._keys[self._active], retired_at=now)
        self._keys[key_id] = replace(info, retired_at=None)
        self._active = key_id
        self._save()
        return self._keys[key_id]

    def ensure_active(self, curve: Curve = Curve.K256) -> tuple[KeyInfo, bool]:
        """The active key, generating a development key first when the keyring is empty. Returns (info, created)."""
        if self._active is not None:
            return self.info(self._active), False
        return self.generate(curve, activate=True), True
