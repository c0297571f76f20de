"""`labeler init`: from nothing to a config file and a label key, then the steps that remain.

Every prompt has a flag, and `--no-input` takes the defaults for the rest, so it also runs unattended. The file
is checked by loading it exactly as the labeler will before it replaces anything, and an existing config is
only overwritten with `--force`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from labeler.cli._config_file import config_path, toml_value
from labeler.config import DEFAULT_CONFIG_FILE, ConfigError, Settings, did_web_for, load_settings
from labeler.declaration import DEFAULT_LABEL, load_declaration
from labeler.keys import Keyring, KeyringError
from labeler.protocol import syntax
from labeler.protocol.crypto import Curve


def _ask(value: Any, no_input: bool, text: str, default: Any, **kwargs: Any) -> Any:
    if value is not None:
        return value
    return default if no_input else click.prompt(text, default=default, **kwargs)


def render_config(values: dict[str, Any], did: str | None, label: dict[str, Any]) -> str:
    """The file `init` writes: top-level settings, then a one-label declaration to edit."""
    did_line = (
        f"did = {toml_value(did)}" if did else '# did = "did:plc:…"  (set by `labeler did create` or `did link-pds`)'
    )
    lines = [
        f"# labeler.toml, written by `labeler init` on {syntax.now()}.",
        "# LABELER_<NAME> environment variables override these settings.",
        did_line,
        *(f"{name} = {toml_value(value)}" for name, value in values.items()),
        "",
        "# What we label with: published by `labeler declare` as app.bsky.labeler.service/self.",
        "# Identifiers must match ^[a-z-]+$ or clients ignore them.",
        "[declaration]",
        'subject_types = ["account", "record"]',
        'subject_collections = ["app.bsky.feed.post"]',
        "",
        "[[declaration.labels]]",
        *(f"{name} = {toml_value(value)}" for name, value in label.items()),
        "",
    ]
    return "\n".join(lines)


def _checked_write(path: Path, text: str) -> Settings:
    """Write atomically, but only a file that loads (settings and declaration) as the labeler will load it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".labeler-", suffix=".toml")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        settings = load_settings(env={"LABELER_CONFIG": tmp})
        load_declaration(settings)
        os.replace(tmp, path)
    except ConfigError as exc:
        raise click.ClickException(f"the config would not load: {exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return settings


@click.command()
@click.option(
    "--config",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="[default: LABELER_CONFIG or ./labeler.toml]",
)
@click.option("--did-method", type=click.Choice(["web", "plc"]), help="did:web (we serve the document) or did:plc.")
@click.option("--public-url", help="Where the labeler is reached: https://host, no path.")
@click.option("--database-url", help="SQLite file or PostgreSQL URL.")
@click.option("--keys-dir", help="Folder for private keys (0700; files 0600).")
@click.option("--plc-url", help="PLC directory.")
@click.option("--label-value", help="The first label value (^[a-z-]+$).")
@click.option("--label-name", help="Its name as clients show it.")
@click.option("--label-description", help="Its description as clients show it.")
@click.option("--curve", type=click.Choice([c.value for c in Curve]), default="k256", show_default=True)
@click.option("--no-input", is_flag=True, help="Never prompt; defaults for everything not given.")
@click.option("--force", is_flag=True, help="Overwrite an existing config file.")
def init(
    path: Path | None,
    did_method: str | None,
    public_url: str | None,
    database_url: str | None,
    keys_dir: str | None,
    plc_url: str | None,
    label_value: str | None,
    label_name: str | None,
    label_description: str | None,
    curve: str,
    no_input: bool,
    force: bool,
) -> None:
    """Write labeler.toml, generate the label key, and print the next steps."""
    path = path or config_path()
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists; pass --force to overwrite it")
    defaults = Settings()
    method = _ask(did_method, no_input, "DID method", "plc", type=click.Choice(["web", "plc"]))
    public_url = _ask(public_url, no_input, "Public URL (https://host)", defaults.public_url)
    values = {
        "public_url": public_url,
        "database_url": _ask(database_url, no_input, "Database URL", defaults.database_url),
        "keys_dir": _ask(keys_dir, no_input, "Keys folder", str(defaults.keys_dir)),
        "plc_url": _ask(plc_url, no_input, "PLC directory", defaults.plc_url),
        **_served_port(public_url),
    }
    locale = DEFAULT_LABEL["locales"][0]
    label = {
        "identifier": _ask(label_value, no_input, "First label value", DEFAULT_LABEL["identifier"]),
        **{k: DEFAULT_LABEL[k] for k in ("severity", "blurs", "default_setting", "adult_only")},
        "locales": [
            {
                "lang": locale["lang"],
                "name": _ask(label_name, no_input, "Its name", locale["name"]),
                "description": _ask(label_description, no_input, "Its description", locale["description"]),
            }
        ],
    }
    did = did_web_for(values["public_url"]) if method == "web" else None
    settings = _checked_write(path, render_config(values, did, label))
    try:
        info, created = Keyring.open(settings.keys_dir).ensure_active(Curve(curve))
    except KeyringError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {path}")
    click.echo(f"{'generated' if created else 'kept the existing'} label key {info.id} {info.did_key}")
    click.echo("\nNext:")
    for step in _next_steps(method, path):
        click.echo(f"  {step}")


def _served_port(public_url: str) -> dict[str, int]:
    """A plain-http public URL with a port is served by `labeler serve` itself, so it listens on that port; behind
    an HTTPS proxy (https://, or no port) the default port stays, and the proxy forwards to it."""
    url = urlsplit(public_url)
    try:
        port = url.port
    except ValueError:
        return {}  # the settings check names the bad URL
    return {"port": port} if url.scheme == "http" and port else {}


def _next_steps(method: str, path: Path) -> list[str]:
    steps = [] if path == Path(DEFAULT_CONFIG_FILE) else [f"export LABELER_CONFIG={path}"]
    if method == "web":
        steps += [
            "labeler did show: the did:web document that `labeler serve` publishes at /.well-known/did.json",
            "note: a did:web has no repo for the declaration unless an account uses it; the Bluesky app needs one",
        ]
    else:
        steps += [
            "with your own PLC rotation key (kept in the keys folder, 0600):",
            "    labeler keys generate --purpose rotation && labeler did create --handle <handle>",
            "or through an existing account's PDS (handle and full password):",
            "    labeler did link-pds --pds https://<pds> --identifier <handle>",
        ]
    return [
        *steps,
        "labeler declare --dry-run, then labeler declare: publish the declaration record",
        "labeler serve: behind HTTPS at the public URL",
        "labeler doctor: check what the network sees",
    ]
