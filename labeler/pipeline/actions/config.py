"""The Actioner's settings: the `[actions]` tables of `labeler.toml` (README "Actions"), and the webhook's `[review]`.

    [actions]
    child_safety_banks = ["NCMEC_CSAM"]   # their default rule publishes nothing before a person confirms
    allow_list_bank = "ALLOW_LIST"        # its entries suppress matches (false positives)
    allow_list_distance = 10
    flood_matches = 20                    # a bank entry matching this many distinct images …
    flood_window_seconds = 3600           # … within this window becomes review-only (flood_matches = 0: off)
    max_attempts = 100                    # retryable failures (PDS down, 5xx) before an action fails for good
    retry_base_seconds = 5.0
    retry_cap_seconds = 600.0
    concurrency = 4                       # actions attempted at once per process

    [actions.takedown]                    # a PDS we administer
    pds_url = "https://pds.example.com"
    admin_password_file = "/run/secrets/pds-admin-password"   # mode 0600; never logged
    hosts = ["https://pds.example.com"]   # PDS endpoints in DID documents this PDS serves (default: pds_url)

    [actions.report]                      # an upstream moderation service
    service_did = "did:plc:ar7c4by46qjdydhdevvrndac"
    pds_url = "https://bsky.social"       # our account's PDS, which vouches for us with service auth
    identifier = "labeler.example.com"
    password_file = "/run/secrets/account-password"          # mode 0600 (an app password will do)
    via = "service-auth"                  # service-auth: our PDS's token, sent to the service | proxy: via our PDS

    [actions.altitude]                    # review in an Altitude deployment (labeler.pipeline.actions.altitude)
    url = "https://altitude.example/api"  # its API root (`/api` on a stock deployment)
    token_file = "/run/secrets/altitude-token"   # optional, mode 0600: a bearer token for the proxy in front of it
    banks = ["TCAP"]                      # review items matching these banks go to Altitude …
    rules = ["terrorism"]                 # … and those of these policy rules
    poll_seconds = 60                     # how often decisions are read back
    settle_seconds = 90                   # a decision younger than this can still be undone in Altitude

Secrets live in files readable by their owner only: a file that group or others can read is refused at start,
and no secret is ever part of a message, a log line or a repr.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from labeler.config import ConfigError
from labeler.pipeline.policy import Policy
from labeler.protocol import syntax

VIA: Final = ("service-auth", "proxy")
DEFAULT_TIMEOUT: Final = 15.0


def read_secret_file(path: Any, what: str) -> str:
    """The secret in `path` (one line, trailing newline dropped); ConfigError if missing, empty or not 0600."""
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{what} must be the path of a file")
    file = Path(path)
    try:
        mode = file.stat().st_mode
        secret = file.read_text().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path} ({exc.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{what}: {path} is readable by others (mode {stat.S_IMODE(mode):04o}); chmod 600 it")
    if not secret:
        raise ConfigError(f"{what}: {path} is empty")
    return secret


@dataclass(frozen=True)
class TakedownConfig:
    pds_url: str
    admin_password: str = field(repr=False)
    hosts: tuple[str, ...]
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True)
class ReportConfig:
    service_did: str
    pds_url: str
    identifier: str
    password: str = field(repr=False)
    via: str = "service-auth"
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    secret: str = field(repr=False)
    timeout: float = 5.0
    max_attempts: int = 8


@dataclass(frozen=True)
class AltitudeConfig:
    url: str
    token: str | None = field(repr=False)
    banks: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    poll_seconds: float = 60.0
    settle_seconds: float = 90.0
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True)
class ActionsConfig:
    child_safety_banks: tuple[str, ...] = ()
    allow_list_bank: str | None = None
    allow_list_distance: int = 10
    flood_matches: int = 20
    flood_window_seconds: float = 3600.0
    max_attempts: int = 100
    retry_base_seconds: float = 5.0
    retry_cap_seconds: float = 600.0
    concurrency: int = 4
    takedown: TakedownConfig | None = None
    report: ReportConfig | None = None
    webhook: WebhookConfig | None = None
    altitude: AltitudeConfig | None = None

    @property
    def lease_seconds(self) -> float:
        """How long a claimed action is held: well past the slowest single request, so no two overlap."""
        timeouts = [c.timeout for c in (self.takedown, self.report, self.webhook, self.altitude) if c is not None]
        return max(timeouts, default=DEFAULT_TIMEOUT) * 4


_NUMBERS: Final = {
    "allow_list_distance": (int, 0, 256),
    "flood_matches": (int, 0, 1_000_000),
    "flood_window_seconds": (float, 1, 30 * 86400),
    "max_attempts": (int, 1, 1_000_000),
    "retry_base_seconds": (float, 0, 86400),
    "retry_cap_seconds": (float, 0, 7 * 86400),
    "concurrency": (int, 1, 64),
}


def load_actions(extra: dict[str, Any]) -> ActionsConfig:
    table = _table(extra, "actions")
    unknown = set(table) - set(_NUMBERS) - {"child_safety_banks", "allow_list_bank", "takedown", "report", "altitude"}
    if unknown:
        raise ConfigError(f"[actions]: unknown keys {sorted(unknown)}")
    values: dict[str, Any] = {}
    for key, (kind, low, high) in _NUMBERS.items():
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise ConfigError(f"[actions] {key} must be a number from {low} to {high}")
            values[key] = kind(value)
    banks = table.get("child_safety_banks", [])
    if not isinstance(banks, list) or not all(isinstance(b, str) and b for b in banks):
        raise ConfigError("[actions] child_safety_banks must be a list of bank names")
    allow_list = table.get("allow_list_bank")
    if allow_list is not None and (not isinstance(allow_list, str) or not allow_list):
        raise ConfigError("[actions] allow_list_bank must be a bank name")
    return ActionsConfig(
        child_safety_banks=tuple(banks),
        allow_list_bank=allow_list,
        takedown=_takedown(table.get("takedown")),
        report=_report(table.get("report")),
        webhook=load_webhook(extra),
        altitude=_altitude(table.get("altitude"), child_safety=tuple(banks)),
        **values,
    )


def _table(extra: dict[str, Any], name: str) -> dict[str, Any]:
    table = extra.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] must be a table")
    return table


def _url(table: dict[str, Any], key: str, where: str) -> str:
    url = table.get(key)
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(f"[{where}] {key} must be an http(s) URL")
    return url.rstrip("/")


def _timeout(table: dict[str, Any], where: str) -> float:
    timeout = table.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 300:
        raise ConfigError(f"[{where}] timeout must be a number of seconds from 0 to 300")
    return float(timeout)


def _subtable(raw: Any, where: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{where}] must be a table")
    unknown = set(raw) - keys
    if unknown:
        raise ConfigError(f"[{where}]: unknown keys {sorted(unknown)}")
    return raw


def _takedown(raw: Any) -> TakedownConfig | None:
    if raw is None:
        return None
    where = "actions.takedown"
    raw = _subtable(raw, where, {"pds_url", "admin_password_file", "hosts", "timeout"})
    pds_url = _url(raw, "pds_url", where)
    hosts = raw.get("hosts", [pds_url])
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) and h for h in hosts):
        raise ConfigError(f"[{where}] hosts must be a list of PDS URLs")
    password = read_secret_file(raw.get("admin_password_file"), f"[{where}] admin_password_file")
    return TakedownConfig(pds_url, password, tuple(h.rstrip("/") for h in hosts), _timeout(raw, where))


def _report(raw: Any) -> ReportConfig | None:
    if raw is None:
        return None
    where = "actions.report"
    raw = _subtable(raw, where, {"service_did", "pds_url", "identifier", "password_file", "via", "timeout"})
    service = raw.get("service_did")
    if not isinstance(service, str) or not syntax.is_did(service):
        raise ConfigError(f"[{where}] service_did must be the DID of the moderation service")
    identifier = raw.get("identifier")
    if not isinstance(identifier, str) or not identifier:
        raise ConfigError(f"[{where}] identifier must be our account's handle or DID")
    via = raw.get("via", "service-auth")
    if via not in VIA:
        raise ConfigError(f"[{where}] via must be one of {', '.join(VIA)}")
    password = read_secret_file(raw.get("password_file"), f"[{where}] password_file")
    return ReportConfig(service, _url(raw, "pds_url", where), identifier, password, via, _timeout(raw, where))


def _altitude(raw: Any, *, child_safety: tuple[str, ...]) -> AltitudeConfig | None:
    """`[actions.altitude]`; refused when it would send a child-safety bank's images out of the labeler."""
    if raw is None:
        return None
    where = "actions.altitude"
    raw = _subtable(raw, where, {"url", "token_file", "banks", "rules", "poll_seconds", "settle_seconds", "timeout"})
    routes = {}
    for key in ("banks", "rules"):
        names = raw.get(key, [])
        if not isinstance(names, list) or not all(isinstance(n, str) and n and n != "*" for n in names):
            raise ConfigError(f"[{where}] {key} must be a list of names")
        routes[key] = tuple(names)
    if not routes["banks"] and not routes["rules"]:
        raise ConfigError(f"[{where}] names no banks and no rules, so nothing would be sent")
    forbidden = sorted(set(routes["banks"]) & set(child_safety))
    if forbidden:
        raise ConfigError(f"[{where}] banks: {forbidden} are child-safety banks, whose images never leave the labeler")
    seconds = {}
    for key, default, low, high in (("poll_seconds", 60.0, 1, 86400), ("settle_seconds", 90.0, 0, 86400)):
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise ConfigError(f"[{where}] {key} must be a number of seconds from {low} to {high}")
        seconds[key] = float(value)
    token_file = raw.get("token_file")
    token = None if token_file is None else read_secret_file(token_file, f"[{where}] token_file")
    return AltitudeConfig(
        _url(raw, "url", where), token, routes["banks"], routes["rules"], timeout=_timeout(raw, where), **seconds
    )


def load_webhook(extra: dict[str, Any]) -> WebhookConfig | None:
    """The webhook of `[review]` (where it has always been configured); None without a URL."""
    table = _table(extra, "review")
    url = table.get("webhook_url")
    if not url:
        return None
    secret = table.get("webhook_secret")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError("[review] webhook_url must be an http(s) URL")
    if not isinstance(secret, str) or len(secret) < 16:
        raise ConfigError("[review] webhook_secret must be a string of at least 16 characters")
    try:
        return WebhookConfig(
            url, secret, float(table.get("webhook_timeout", 5.0)), int(table.get("webhook_max_attempts", 8))
        )
    except (TypeError, ValueError):
        raise ConfigError("[review] webhook_timeout / webhook_max_attempts must be numbers") from None


def check_policy(policy: Policy, config: ActionsConfig) -> None:
    """ConfigError for a rule that takes an action this labeler has no configuration for."""
    needs = {"takedown": config.takedown, "report": config.report, "webhook": config.webhook}
    table = {"takedown": "[actions.takedown]", "report": "[actions.report]", "webhook": "[review] webhook_url"}
    for rule in policy.rules:
        for kind, configured in needs.items():
            if getattr(rule, f"{kind}_distance") is not None and configured is None:
                raise ConfigError(f"policy rule {rule.name!r}: {kind}_distance needs {table[kind]} to be configured")
    if config.altitude is not None:
        rules = {rule.name: rule for rule in policy.rules}
        for name in config.altitude.rules:
            if name not in rules:
                raise ConfigError(f"[actions.altitude] rules: there is no policy rule {name!r}")
            banks = rules[name].banks
            if set(config.child_safety_banks) & ({*banks, *config.child_safety_banks} if "*" in banks else set(banks)):
                raise ConfigError(
                    f"[actions.altitude] rules: {name!r} covers child-safety banks, whose images never leave the "
                    "labeler (name its other banks in [actions.altitude] banks instead)"
                )
