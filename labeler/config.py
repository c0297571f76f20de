"""One settings object, read from `LABELER_*` environment variables and an optional TOML file.

Precedence: environment > TOML file (`LABELER_CONFIG`, else `./labeler.toml` when present) > defaults. Every
limit on outside input is a setting with a safe default here, so no limit is ever off by accident.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlsplit

ENV_PREFIX: Final = "LABELER_"
DEFAULT_CONFIG_FILE: Final = "labeler.toml"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the setting."""


@dataclass(frozen=True)
class Settings:
    did: str = ""
    public_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = "sqlite+aiosqlite:///labeler.db"
    keys_dir: Path = Path("keys")
    admin_password: str = ""
    log_level: str = "info"
    # Limits on outside input.
    max_body_bytes: int = 256 * 1024
    max_query_patterns: int = 100
    max_query_sources: int = 100
    # subscribeLabels: frames buffered per subscriber before it is cut off with ConsumerTooSlow.
    subscriber_buffer: int = 2000
    backfill_page_size: int = 500
    max_subscribers: int = 5000
    # Labels the writer commits in one transaction at most (group commit).
    writer_max_batch: int = 2000
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.public_url:
            object.__setattr__(self, "public_url", f"http://localhost:{self.port}")
        url = urlsplit(self.public_url)
        if url.scheme not in ("http", "https") or not url.hostname or url.path not in ("", "/"):
            raise ConfigError(f"LABELER_PUBLIC_URL must be scheme://host[:port] with no path: {self.public_url!r}")
        object.__setattr__(self, "public_url", self.public_url.rstrip("/"))
        if not self.did:
            object.__setattr__(self, "did", did_web_for(self.public_url))
        if not self.did.startswith("did:"):
            raise ConfigError(f"LABELER_DID must be a DID: {self.did!r}")
        for name in ("max_body_bytes", "subscriber_buffer", "backfill_page_size", "writer_max_batch"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"LABELER_{name.upper()} must be positive")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def serves_did_web(self) -> bool:
        """We serve `/.well-known/did.json` only for the did:web of our own public host (like Ozone)."""
        return self.did == did_web_for(self.public_url)


def did_web_for(public_url: str) -> str:
    """`http://localhost:8080` → `did:web:localhost%3A8080` (the port's colon is percent-encoded)."""
    netloc = urlsplit(public_url).netloc
    return "did:web:" + quote(netloc, safe="")


def _coerce(name: str, raw: Any, kind: Any) -> Any:
    try:
        if kind in (int, "int"):
            return int(raw)
        if kind in (Path, "Path"):
            return Path(raw)
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be {kind}: {raw!r}") from None


def load_settings(env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build Settings from the environment (and the TOML file it names); `overrides` win over both."""
    env = dict(os.environ if env is None else env)
    values: dict[str, Any] = {}
    config_path = env.get(f"{ENV_PREFIX}CONFIG") or (DEFAULT_CONFIG_FILE if Path(DEFAULT_CONFIG_FILE).exists() else "")
    extra: dict[str, Any] = {}
    known = {f.name: f.type for f in fields(Settings) if f.name != "extra"}
    if config_path:
        try:
            data = tomllib.loads(Path(config_path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {config_path}: {exc}") from None
        for key, value in data.items():
            if key in known:
                values[key] = value
            else:
                extra[key] = value
    for name in known:
        raw = env.get(f"{ENV_PREFIX}{name.upper()}")
        if raw is not None and raw != "":
            values[name] = raw
    values.update({k: v for k, v in overrides.items() if k in known})
    extra.update(overrides.get("extra", {}))
    coerced = {name: _coerce(name, value, known[name]) for name, value in values.items()}
    return Settings(**coerced, extra=extra)
