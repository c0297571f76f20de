"""Making a label key active only once the DID document names it (`keys generate --activate`, `keys import`), key
import from other tools' formats, and `did update` refusing an endpoint PDSes will not proxy to. Through the CLI,
with an in-memory PLC directory that checks operations like the real one."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import libipld
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from support.memory_plc import MemoryPlc, running_memory_plc
from support.server import RunningServer

from labeler.cli import cli
from labeler.config import load_settings
from labeler.identity.plc_directory import PlcDirectory, update_did
from labeler.key_formats import KeyFormatError, parse_private_key
from labeler.keys import Keyring, read_key_file
from labeler.protocol.crypto import Curve, SigningKey


@pytest.fixture(scope="module")
def memory_plc() -> Iterator[tuple[MemoryPlc, RunningServer]]:
    with running_memory_plc() as running:
        yield running


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory_plc: tuple[MemoryPlc, RunningServer]) -> CliRunner:
    """A labeler with a did:plc (created by `did create` in the in-memory PLC) and its rotation key."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("LABELER_"):
            monkeypatch.delenv(name)
    runner = CliRunner()
    ok(runner, "init", "--no-input", "--did-method", "plc", "--plc-url", memory_plc[1].url,
       "--public-url", "https://labeler.example.com", "--database-url", "sqlite+aiosqlite:///labeler.db")  # fmt: skip
    ok(runner, "keys", "generate", "--purpose", "rotation")
    ok(runner, "did", "create")
    return runner


def ok(runner: CliRunner, *args: str, input: str | None = None) -> str:
    result = runner.invoke(cli, list(args), input=input, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def fails(runner: CliRunner, *args: str, input: str | None = None) -> str:
    result = runner.invoke(cli, list(args), input=input)
    assert result.exit_code == 1 and "Error:" in result.output and "Traceback" not in result.output, result.output
    return result.output


def active(tmp_path: Path) -> str | None:
    return Keyring.open(tmp_path / "keys").active_id


def publish(plc_url: str, did_key: str) -> None:
    """Another tool (here: our PLC code with the rotation key) puts `did_key` in the labeler's DID document."""
    settings = load_settings()
    rotation = read_key_file(settings.keys_dir / "rotation.pem")

    async def go() -> None:
        async with PlcDirectory(plc_url) as directory:
            await update_did(directory, settings.did, rotation, lambda s: s.with_labeler(did_key, settings.public_url))

    asyncio.run(go())


def test_generate_activate_refuses_a_key_the_document_does_not_name(
    runner: CliRunner, tmp_path: Path, memory_plc: tuple[MemoryPlc, RunningServer]
) -> None:
    plc, _ = memory_plc
    did, first = load_settings().did, active(tmp_path)
    out = fails(runner, "keys", "generate", "--activate")
    assert "names" in out and "keys rotate --key" in out and "--force" in out
    assert active(tmp_path) == first  # signing is unchanged; the new key is kept, inactive
    assert len(Keyring.open(tmp_path / "keys").all_keys()) == 2
    assert "(active)" not in ok(runner, "keys", "generate")  # without --activate: stored, inactive

    result = runner.invoke(cli, ["keys", "generate", "--activate", "--force"])
    assert result.exit_code == 0, result.output
    assert "WARNING" in result.stderr and "FAILS verification" in result.stderr
    forced = Keyring.open(tmp_path / "keys").active()[0]
    assert forced.id != first and plc.state(did).verification_methods["atproto_label"] != forced.did_key


def test_did_web_served_here_needs_rotate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("LABELER_"):
            monkeypatch.delenv(name)
    runner = CliRunner()
    ok(runner, "init", "--no-input", "--did-method", "web", "--public-url", "https://labeler.example.com")
    first = active(tmp_path)
    assert "keys rotate --key" in fails(runner, "keys", "generate", "--activate")
    assert active(tmp_path) == first


def secret_of(key: SigningKey) -> bytes:
    pem = serialization.load_pem_private_key(key.to_pem(), password=None)
    return pem.private_numbers().private_value.to_bytes(32, "big")  # type: ignore[union-attr]


def test_import_formats_file_mode_and_no_echo(runner: CliRunner, tmp_path: Path) -> None:
    k256, p256, pem_key, mb_key = (SigningKey.generate(c) for c in (Curve.K256, Curve.P256, Curve.P256, Curve.K256))
    sec1 = serialization.load_pem_private_key(pem_key.to_pem(), password=None).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    cases = {
        "hex": (secret_of(k256).hex(), (), k256),
        "hex-p256": ("0x" + secret_of(p256).hex(), ("--curve", "p256"), p256),
        "sec1": (sec1.decode(), (), pem_key),
        "pkcs8": (k256.to_pem().decode(), (), None),  # the same key as "hex": refused below
        "multibase": (libipld.encode_multibase("z", bytes([0x81, 0x26]) + secret_of(mb_key)), (), mb_key),
    }
    first = active(tmp_path)
    for name, (text, extra, key) in cases.items():
        if key is None:
            continue
        path = tmp_path / f"{name}.txt"
        path.write_text(text + "\n")
        out = ok(runner, "keys", "import", str(path), *extra)
        assert key.did_key in out and text.strip() not in out and "BEGIN" not in out
        info = next(k for k in Keyring.open(tmp_path / "keys").all_keys() if k.did_key == key.did_key)
        key_file = tmp_path / "keys" / info.file
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and read_key_file(key_file).did_key == key.did_key
    assert "already in" in fails(runner, "keys", "import", "-", input=cases["pkcs8"][0])
    (tmp_path / "binary.der").write_bytes(bytes(range(256)))
    assert "not a text key" in fails(runner, "keys", "import", "binary.der")
    assert "cannot read missing.pem" in fails(runner, "keys", "import", "missing.pem")
    assert "larger than a private key" in fails(runner, "keys", "import", "-", input="A" * 5000)
    assert "is k256, not p256" in fails(runner, "keys", "import", "-", "--curve", "p256", input=cases["pkcs8"][0])
    assert active(tmp_path) == first  # importing never activates an existing labeler's key on its own


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not a key", "not a private key"),
        ("00" * 32, "out of range"),
        ("z" + "1" * 40, "not a secp256k1 or p256 private key"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a usable PEM"),
    ],
)
def test_import_refuses_what_is_not_a_key_without_echoing_it(text: str, message: str) -> None:
    with pytest.raises(KeyFormatError, match=message) as failed:
        parse_private_key(text)
    assert text.strip() not in str(failed.value)


def test_import_activate_once_the_document_names_the_key(
    runner: CliRunner, tmp_path: Path, memory_plc: tuple[MemoryPlc, RunningServer]
) -> None:
    unpublished, published = SigningKey.generate(), SigningKey.generate()  # e.g. Ozone's OZONE_SIGNING_KEY_HEX
    first = active(tmp_path)
    out = fails(runner, "keys", "import", "-", "--activate", input=secret_of(unpublished).hex())
    assert f"names {Keyring.open(tmp_path / 'keys').info(first or '').did_key}" in out
    assert active(tmp_path) == first
    publish(memory_plc[1].url, published.did_key)
    out = ok(runner, "keys", "import", "-", "--activate", input=secret_of(published).hex())
    now = Keyring.open(tmp_path / "keys").active()[0]
    assert now.did_key == published.did_key and f"activated {now.id}" in out


def test_did_update_refuses_an_ip_address_endpoint(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, memory_plc: tuple[MemoryPlc, RunningServer]
) -> None:
    plc, _ = memory_plc
    did = load_settings().did
    before = len(plc.logs[did])
    for url in ("https://203.0.113.7", "http://[2001:db8::1]:8080"):
        monkeypatch.setenv("LABELER_PUBLIC_URL", url)
        out = fails(runner, "did", "update")
        assert "IP address" in out and "host name" in out
        assert "IP address" in fails(runner, "keys", "rotate")
    assert len(plc.logs[did]) == before  # nothing was submitted
    monkeypatch.setenv("LABELER_PUBLIC_URL", "https://labels.example.org")
    ok(runner, "did", "update")
    assert plc.state(did).services["atproto_labeler"]["endpoint"] == "https://labels.example.org"
