"""An exchange's credentials: one JSON file per exchange under `<keys_dir>/exchanges/`, mode 0600 in a 0700 folder.

They are kept out of the database (which backups and replicas copy widely) and next to the signing keys, which
need the same care. What each type keeps there (user and password, API keys, a token) is its `credentials`
fields; no value is ever part of a repr, a log line, an error message or a CLI answer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from labeler.exchanges.errors import ExchangeError
from labeler.keys import private_directory


class Credentials:
    """The values of one exchange's credentials file, by key."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    def __getitem__(self, key: str) -> str:
        try:
            return self._values[key]
        except KeyError:
            raise ExchangeError(f"the exchange's credentials have no {key!r}; add the exchange again") from None

    def get(self, key: str) -> str | None:
        return self._values.get(key)

    def __repr__(self) -> str:
        return f"Credentials({sorted(self._values)})"  # the keys only


def credentials_path(keys_dir: Path, name: str) -> Path:
    return keys_dir / "exchanges" / f"{name}.json"


def write_credentials(keys_dir: Path, name: str, credentials: Credentials) -> Path:
    """Write (or replace) exchange `name`'s credentials; the file is 0600 from its first byte."""
    path = credentials_path(keys_dir, name)
    private_directory(path.parent)
    staging = path.with_suffix(".tmp")
    staging.unlink(missing_ok=True)
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(credentials._values, fh)
    staging.replace(path)
    return path


def read_credentials(keys_dir: Path, name: str) -> Credentials:
    path = credentials_path(keys_dir, name)
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(stored, dict):
            raise TypeError("not an object")
        return Credentials({str(k): str(v) for k, v in stored.items()})
    except FileNotFoundError:
        raise ExchangeError(f"no credentials for exchange {name!r} ({path}); add the exchange again") from None
    except (OSError, ValueError, TypeError) as exc:
        why = type(exc).__name__
        raise ExchangeError(f"cannot read the credentials of exchange {name!r} ({path}): {why}") from None


def remove_credentials(keys_dir: Path, name: str) -> None:
    credentials_path(keys_dir, name).unlink(missing_ok=True)
