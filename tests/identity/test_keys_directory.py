"""The keys directory is private (0700) once the labeler uses it, also when it existed before with git's 0755."""

from __future__ import annotations

import stat
from pathlib import Path

from labeler.keys import Keyring


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_fresh_clones_keys_directory_becomes_private_with_the_first_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o755)
    keys.chmod(0o755)  # as in a fresh clone: the folder holds the committed README.md
    (keys / "README.md").write_text("keys\n")
    info = Keyring.open(keys).generate()
    assert mode(keys) == 0o700
    assert mode(keys / info.file) == 0o600


def test_an_existing_keyring_in_an_open_directory_is_made_private_when_opened(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    info = Keyring.open(keys).generate()
    keys.chmod(0o755)
    assert Keyring.open(keys).active()[0] == info
    assert mode(keys) == 0o700


def test_a_missing_directory_is_not_created_by_reading(tmp_path: Path) -> None:
    assert Keyring.open(tmp_path / "keys").active_id is None
    assert not (tmp_path / "keys").exists()
