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
# HMA's PDQ match threshold (pytx PDQ_CONFIDENT_MATCH_THRESHOLD), inclusive: its index returns nothing farther.
HMA_MAX_DISTANCE: Final = 31


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the setting."""


@dataclass(frozen=True)
class Settings:
    did: str = ""
    public_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    # `labeler worker` / `labeler ingest`: where they serve their own /metrics; port 0 serves none (serve answers
    # /metrics on its own port).
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    database_url: str = "sqlite+aiosqlite:///labeler.db"
    keys_dir: Path = Path("keys")
    admin_password: str = ""
    log_level: str = "info"
    log_format: str = "text"  # text | json (one JSON object per line, for log shippers)
    # Limits on outside input.
    max_body_bytes: int = 256 * 1024
    max_query_patterns: int = 100
    max_query_sources: int = 100
    # HTTP connections: open at once (kept below the file-descriptor limit), seconds a client has to send a request
    # head (from connecting or from its previous response), seconds an idle keep-alive connection is kept.
    max_connections: int = 10_000
    header_timeout: float = 10.0
    # Seconds a client has to send a request body after its head, plus one per MB it declares.
    body_timeout: float = 60.0
    keepalive_timeout: float = 5.0
    # subscribeLabels: frames buffered per subscriber before it is cut off with ConsumerTooSlow.
    subscriber_buffer: int = 5000
    backfill_page_size: int = 500
    max_subscribers: int = 5000
    # subscribeLabels connections from one client (an IPv4 address or an IPv6 /64) at once.
    max_subscribers_per_client: int = 20
    # Seconds a client may take none of our bytes while its send buffer is full before it is disconnected.
    client_stall_timeout: float = 10.0
    # Threads that write a live commit to the subscribers' sockets, the event loop's own included; 0: one per core.
    fan_out_threads: int = 0
    # Labels the writer commits in one transaction at most (group commit).
    writer_max_batch: int = 1000
    # Identity and auth.
    plc_url: str = "https://plc.directory"
    moderators: str = ""  # comma-separated DIDs allowed to use the moderation API with service auth
    # Failed password attempts (admin password, upload tokens) one client may make per window (seconds); then 429.
    max_login_failures: int = 10
    login_failure_window: float = 60.0
    max_token_lifetime: int = 3600  # seconds a service token may still be valid (getServiceAuth grants at most 1 h)
    allow_insecure_did_web: bool = False  # did:web over http://localhost:PORT (tests, local development)
    # Image pipeline.
    matcher: str = "embedded"  # embedded | hma
    hma_url: str = ""
    workers: int = 1  # in-process pipeline workers for `serve`; 0 leaves the queue to `labeler worker`
    firehose_url: str = ""  # ws(s)://relay-or-pds (com.atproto.sync.subscribeRepos)
    jetstream_url: str = ""  # ws(s)://jetstream host (the lightweight JSON alternative)
    ingest_profiles: bool = False  # sources also check profile avatars and banners, not only post images
    ingest_max_pending_jobs: int = 200_000  # sources pause while this many jobs are not done; 0: no bound
    upload_tokens: str = ""  # comma-separated bearer tokens for the upload-time check API
    allow_private_fetch: bool = False  # let the fetcher reach loopback/private addresses (tests only)
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    fetch_timeout: float = 15.0
    max_jpeg_scans: int = 100
    hash_timeout: float = 10.0  # wall seconds per image (job or upload check); then its process is replaced
    hash_memory_mb: int = 1024  # address space of each hashing process
    upload_max_wait: float = 5.0  # an upload check waits this long for a free hashing process, then 503
    pdq_quality_threshold: int = 50
    match_distance: int = 31
    dihedral: bool = False
    reduced_decode: bool = True  # false: full decode, bit for bit HMA's hash (pdq_reduced, bench/README.md)
    # Video (app.bsky.embed.video): fetched to a temporary file, probed, then vPDQ-hashed within these limits.
    max_video_bytes: int = 300_000_000  # the lexicon's maxSize
    max_video_seconds: float = 600.0
    max_video_pixels: int = 3840 * 2160
    video_fetch_timeout: float = 120.0
    video_hash_timeout: float = 120.0  # wall seconds to probe and hash one video, then its process is replaced
    vpdq_seconds_per_hash: float = 1.0  # one frame hashed per this many seconds (pytx's default)
    vpdq_query_match_percent: float = 80.0  # share of the video's frames that must match a banked video's
    vpdq_compared_match_percent: float = 0.0  # share of the banked video's frames that must be matched
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
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"LABELER_LOG_FORMAT must be text or json: {self.log_format!r}")
        if self.subscriber_buffer < 2 * self.writer_max_batch:
            # One commit is fanned out at once; a buffer smaller than two commits cuts off subscribers that keep up.
            raise ConfigError("LABELER_SUBSCRIBER_BUFFER must be at least twice LABELER_WRITER_MAX_BATCH")
        if self.matcher not in ("embedded", "hma"):
            raise ConfigError(f"LABELER_MATCHER must be embedded or hma: {self.matcher!r}")
        if self.matcher == "hma" and not self.hma_url:
            raise ConfigError("LABELER_MATCHER=hma needs LABELER_HMA_URL")
        if not 0 <= self.match_distance <= 256:
            raise ConfigError("LABELER_MATCH_DISTANCE must be from 0 to 256 (bits of a PDQ hash)")
        if self.matcher == "hma" and self.match_distance > HMA_MAX_DISTANCE:
            # HMA's index never returns a match beyond its own threshold: a larger setting would silently act as 31.
            raise ConfigError(
                f"LABELER_MATCH_DISTANCE={self.match_distance} is above {HMA_MAX_DISTANCE}, the farthest HMA ever "
                f"matches; with LABELER_MATCHER=hma set it to {HMA_MAX_DISTANCE} or less (or use the embedded matcher)"
            )
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError("LABELER_METRICS_PORT must be a port from 1 to 65535, or 0 (no metrics listener)")
        if self.fan_out_threads < 0:
            raise ConfigError("LABELER_FAN_OUT_THREADS must be 0 (one per core) or more")
        if self.ingest_max_pending_jobs < 0:
            raise ConfigError("LABELER_INGEST_MAX_PENDING_JOBS must be 0 (no bound) or more")
        for name in (
            "max_body_bytes", "subscriber_buffer", "backfill_page_size", "writer_max_batch",
            "max_image_bytes", "max_image_pixels", "max_subscribers", "max_subscribers_per_client",
            "max_jpeg_scans", "hash_timeout", "upload_max_wait",
            "max_token_lifetime", "max_connections", "header_timeout", "body_timeout", "keepalive_timeout",
            "max_login_failures", "login_failure_window",
            "max_video_bytes", "max_video_seconds", "max_video_pixels", "video_fetch_timeout", "video_hash_timeout",
        ):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ConfigError(f"LABELER_{name.upper()} must be positive")
        if not self.client_stall_timeout > 0:
            raise ConfigError("LABELER_CLIENT_STALL_TIMEOUT must be positive")
        if self.hash_memory_mb < 256:
            # The interpreter and the imaging libraries take ~150-250 MiB of address space before any image.
            raise ConfigError("LABELER_HASH_MEMORY_MB must be at least 256")
        if not 0.04 <= self.vpdq_seconds_per_hash <= 60:
            raise ConfigError("LABELER_VPDQ_SECONDS_PER_HASH must be from 0.04 (25 frames/s) to 60")
        for name in ("vpdq_query_match_percent", "vpdq_compared_match_percent"):
            if not 0 <= getattr(self, name) <= 100:
                raise ConfigError(f"LABELER_{name.upper()} must be a percentage from 0 to 100")

    @property
    def moderator_dids(self) -> list[str]:
        return [d.strip() for d in self.moderators.split(",") if d.strip()]

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


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _coerce(name: str, raw: Any, kind: Any) -> Any:
    try:
        if kind in (bool, "bool"):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text not in _TRUE + _FALSE:
                raise ValueError(text)
            return text in _TRUE
        if kind in (int, "int"):
            return int(raw)
        if kind in (float, "float"):
            return float(raw)
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
