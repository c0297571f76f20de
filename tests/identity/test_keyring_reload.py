"""A running server follows key changes made by another process; rotation key files; re-signing the backlog."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from labeler.keys import KEYRING_FILE, Keyring, KeyringError, read_key_file, write_key_file
from labeler.labels.resign import resign_backlog
from labeler.labels.writer import LabelRequest
from labeler.protocol import syntax
from labeler.protocol.crypto import SigningKey
from labeler.protocol.label import Label
from labeler.service import Labeler
from labeler.store.label_stats import count_stale
from labeler.store.labels import LabelAction


def test_another_process_activation_is_picked_up(tmp_path: Path) -> None:
    server = Keyring.open(tmp_path)
    first = server.generate()
    cli = Keyring.open(tmp_path)  # e.g. `labeler keys rotate` in another process
    second = cli.generate(activate=True)
    assert server.reload_if_changed() is False  # checked less than RELOAD_INTERVAL ago: no stat yet
    assert server.active_id == first.id
    assert server.reload_if_changed(force=True) is True
    assert server.active()[0].id == second.id and server.info(first.id).retired_at is not None
    assert server.reload_if_changed(force=True) is False  # unchanged file: nothing to do


def test_active_checks_the_file_at_most_once_per_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("labeler.keys.time.monotonic", lambda: clock[0])
    server = Keyring.open(tmp_path)
    server.generate()
    second = Keyring.open(tmp_path).generate(activate=True)
    clock[0] += 0.5
    assert server.active()[0].id != second.id
    clock[0] += 0.6
    assert server.active()[0].id == second.id


def test_unreadable_keyring_keeps_the_loaded_one(tmp_path: Path) -> None:
    server = Keyring.open(tmp_path)
    key = server.generate()
    (tmp_path / KEYRING_FILE).write_text("{ not json")
    assert server.reload_if_changed(force=True) is False
    assert server.active()[0].id == key.id


def test_rotation_key_file(tmp_path: Path) -> None:
    path, key = tmp_path / "keys" / "rotation.pem", SigningKey.generate()
    write_key_file(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert read_key_file(path).did_key == key.did_key
    with pytest.raises(KeyringError, match="not overwriting"):
        write_key_file(path, SigningKey.generate())
    assert read_key_file(path).did_key == key.did_key
    with pytest.raises(KeyringError, match="cannot load"):
        read_key_file(tmp_path / "missing.pem")


async def test_resign_backlog_keeps_seq_and_cts(labeler: Labeler) -> None:
    old_id = labeler.keyring.active()[0].id
    before = await labeler.writer.write([LabelRequest(uri=f"did:plc:subject{i:016d}", val="spam") for i in range(120)])
    new = labeler.keyring.generate(activate=True)
    assert await count_stale(labeler.engine, labeler.settings.did, new.id) == 120
    progress: list[int] = []
    done = await resign_backlog(labeler.store, labeler.resigner, batch=50, progress=progress.append)
    assert done == 120 and progress == [50, 50, 20]
    assert await count_stale(labeler.engine, labeler.settings.did, new.id) == 0
    after = await labeler.store.after(0, 1000)
    assert [(r.seq, r.label.cts) for r in after] == [(r.seq, r.label.cts) for r in before]
    assert all(r.key_id == new.id and r.label.verify(new.did_key) for r in after)
    assert not any(r.label.verify(labeler.keyring.info(old_id).did_key) for r in after)


async def test_a_stale_keyring_never_resigns_a_newer_keys_labels(labeler: Labeler) -> None:
    """Another process rotated and wrote with the new key before this one's periodic reload: reading must not
    re-sign those labels back to the old key (the DID document no longer names it)."""
    await labeler.writer.write([LabelRequest(uri="did:plc:subjectold000000000000001", val="spam")])
    other = Keyring.open(labeler.keyring.directory)  # `labeler keys rotate` / another serve process
    new = other.generate(activate=True)
    assert labeler.keyring.active_id != new.id  # not reloaded yet (RELOAD_INTERVAL)
    label = Label(labeler.settings.did, "did:plc:subjectnew000000000000001", "spam", syntax.now())
    await labeler.store.commit([LabelAction(label.signed(other.signing_key(new.id)), new.id, "test", "test")])
    served = await labeler.resigner.current(await labeler.store.after(0, 10))
    assert [r.key_id for r in served] == [new.id, new.id]
    assert all(r.label.verify(new.did_key) for r in await labeler.store.after(0, 10))


async def test_resign_leaves_labels_of_keys_it_does_not_hold(labeler: Labeler) -> None:
    """A label signed by a key this keyring does not know (another keys directory) is served as it is."""
    foreign = SigningKey.generate()
    label = Label(labeler.settings.did, "did:plc:subjectforeign0000000000001", "spam", syntax.now()).signed(foreign)
    await labeler.store.commit([LabelAction(label, "k256-foreign", "test", "test")])
    assert await resign_backlog(labeler.store, labeler.resigner) == 0
    (row,) = await labeler.store.after(0, 10)
    assert row.key_id == "k256-foreign" and row.label.verify(foreign.did_key)
