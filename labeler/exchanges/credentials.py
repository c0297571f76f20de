"""An exchange's credentials: one JSON file per exchange under `<keys_dir>/exchanges/`, mode 0600 in a 0700 folder.

They are kept out of the database (which backups and replicas copy widely) and next to the signing keys, which
need the same care. What each type keeps there (user and password, API keys, a token) is its `credentials`
fields; no value is ever part of a repr, a log line, an error message or a CLI answer.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
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
    with staged_credentials(keys_dir, name, credentials) as place:
        place()
    return credentials_path(keys_dir, name)


@contextmanager
def staged_credentials(keys_dir: Path, name: str, credentials: Credentials) -> Iterator[Callable[[], None]]:
    """Exchange `name`'s credentials written to a private file of their own beside their place, and the function
    that moves them there (one rename: readers see the old file or the new, whole). When the block fails, neither
    that file nor, once moved, the credentials stay: `labeler exchange add` moves them in place inside the
    transaction that adds the exchange, so a failed add leaves neither a row without credentials (every fetch would
    fail) nor secrets without a row. The file is per process, so concurrent adds of one name never share it."""
    path = credentials_path(keys_dir, name)
    placed = False
    try:
        private_directory(path.parent)
        fd, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{name}-", suffix=".tmp")  # 0600
    except OSError as exc:
        raise _unwritable(name, path, exc) from None

    def place() -> None:
        nonlocal placed
        try:
            os.replace(staging, path)
        except OSError as exc:
            raise _unwritable(name, path, exc) from None
        placed = True

    try:
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(credentials._values, fh)
        except OSError as exc:
            raise _unwritable(name, path, exc) from None
        yield place
    except BaseException:
        if placed:
            path.unlink(missing_ok=True)
        raise
    finally:
        if not placed:
            Path(staging).unlink(missing_ok=True)


def _unwritable(name: str, path: Path, exc: OSError) -> ExchangeError:
    return ExchangeError(f"cannot write the credentials of exchange {name!r} ({path}): {exc.strerror or exc}")


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
