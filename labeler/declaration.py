"""The labeler's declaration (`app.bsky.labeler.service/self`, protocol.md §5.2), built from configuration.

It is the single source for what we emit and what we accept: label values and their definitions, and the
`reasonTypes` / `subjectTypes` / `subjectCollections` that createReport is checked against. In `labeler.toml`:

    [declaration]
    reason_types = ["com.atproto.moderation.defs#reasonViolation", "tools.ozone.report.defs#reasonChildSafetyCSAM"]
    subject_types = ["account", "record"]
    subject_collections = ["app.bsky.feed.post"]

    [[declaration.labels]]
    identifier = "csam-hash-match"
    severity = "alert"          # inform | alert | none
    blurs = "media"             # content | media | none
    default_setting = "hide"    # ignore | warn | hide
    adult_only = false
    locales = [{ lang = "en", name = "Known abuse image", description = "Matched a hash bank of known abuse imagery." }]

An absent list means "all" and an empty list means "none", as in the lexicon (protocol.md §4.3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

from labeler.config import ConfigError, Settings
from labeler.protocol import syntax

IDENTIFIER_RE: Final = re.compile(r"[a-z-]+")  # fullmatch: `$` would allow a trailing newline
GLOBAL_VALUES: Final = frozenset(
    {"!hide", "!warn", "!no-unauthenticated", "porn", "sexual", "nudity", "graphic-media", "gore"}
)
SEVERITIES: Final = ("inform", "alert", "none")
BLURS: Final = ("content", "media", "none")
DEFAULT_SETTINGS: Final = ("ignore", "warn", "hide")
SUBJECT_TYPES: Final = ("account", "record", "chat")
DEFAULT_LABEL: Final[dict[str, Any]] = {
    "identifier": "csam-hash-match",
    "severity": "alert",
    "blurs": "media",
    "default_setting": "hide",
    "adult_only": False,
    "locales": [
        {
            "lang": "en",
            "name": "Known harmful image",
            "description": "An image in this content matches a hash bank of known harmful imagery.",
        }
    ],
}


@dataclass(frozen=True)
class LabelDefinition:
    identifier: str
    severity: str
    blurs: str
    locales: list[dict[str, str]]
    default_setting: str = "warn"
    adult_only: bool = False

    def to_record(self) -> dict[str, Any]:
        return {
            "identifier": self.identifier,
            "severity": self.severity,
            "blurs": self.blurs,
            "defaultSetting": self.default_setting,
            "adultOnly": self.adult_only,
            "locales": [dict(loc) for loc in self.locales],
        }


@dataclass(frozen=True)
class Declaration:
    definitions: list[LabelDefinition]
    extra_values: list[str] = field(default_factory=list)  # global values we emit without our own definition
    reason_types: list[str] | None = None
    subject_types: list[str] | None = None
    subject_collections: list[str] | None = None

    @property
    def label_values(self) -> list[str]:
        return [d.identifier for d in self.definitions] + list(self.extra_values)

    def to_record(self, created_at: str | None = None) -> dict[str, Any]:
        """The `app.bsky.labeler.service` record (camelCase, with `$type`)."""
        record: dict[str, Any] = {
            "$type": "app.bsky.labeler.service",
            "policies": {
                "labelValues": self.label_values,
                "labelValueDefinitions": [d.to_record() for d in self.definitions],
            },
            "createdAt": created_at or syntax.now(),
        }
        if self.reason_types is not None:
            record["reasonTypes"] = list(self.reason_types)
        if self.subject_types is not None:
            record["subjectTypes"] = list(self.subject_types)
        if self.subject_collections is not None:
            record["subjectCollections"] = list(self.subject_collections)
        return record


def _choice(entry: dict[str, Any], key: str, allowed: tuple[str, ...], default: str | None = None) -> str:
    value = entry.get(key, default)
    if value not in allowed:
        raise ConfigError(f"declaration label {entry.get('identifier')!r}: {key} must be one of {', '.join(allowed)}")
    return str(value)


def _definition(entry: dict[str, Any]) -> LabelDefinition:
    identifier = entry.get("identifier")
    if not isinstance(identifier, str) or not IDENTIFIER_RE.fullmatch(identifier) or len(identifier) > 100:
        raise ConfigError(f"declaration label identifier {identifier!r} must match ^[a-z-]+$ (≤ 100 characters)")
    locales = entry.get("locales")
    if not isinstance(locales, list) or not locales:
        raise ConfigError(f"declaration label {identifier!r}: locales must be a non-empty list")
    for loc in locales:
        if not isinstance(loc, dict) or not all(isinstance(loc.get(k), str) for k in ("lang", "name", "description")):
            raise ConfigError(f"declaration label {identifier!r}: each locale needs lang, name and description")
        if len(loc["name"]) > 64 or len(loc["description"]) > 10_000:
            raise ConfigError(f"declaration label {identifier!r}: locale name ≤ 64, description ≤ 10000 characters")
    return LabelDefinition(
        identifier=identifier,
        severity=_choice(entry, "severity", SEVERITIES),
        blurs=_choice(entry, "blurs", BLURS),
        default_setting=_choice(entry, "default_setting", DEFAULT_SETTINGS, "warn"),
        adult_only=bool(entry.get("adult_only", False)),
        locales=[{"lang": loc["lang"], "name": loc["name"], "description": loc["description"]} for loc in locales],
    )


def _string_list(section: dict[str, Any], key: str) -> list[str] | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"declaration.{key} must be a list of strings")
    return list(value)


def load_declaration(settings: Settings) -> Declaration:
    """The declaration from `[declaration]` in the config file, or a one-label default for the hash matcher."""
    section = settings.extra.get("declaration", {})
    if not isinstance(section, dict):
        raise ConfigError("[declaration] must be a table")
    labels = section.get("labels", [DEFAULT_LABEL])
    if not isinstance(labels, list):
        raise ConfigError("declaration.labels must be an array of tables")
    definitions = [_definition(entry) for entry in labels]
    extra_values = _string_list(section, "global_values") or []
    unknown = [v for v in extra_values if v not in GLOBAL_VALUES]
    if unknown:
        raise ConfigError(f"declaration.global_values: not global label values: {unknown}")
    subject_types = _string_list(section, "subject_types")
    if subject_types is not None and any(t not in SUBJECT_TYPES for t in subject_types):
        raise ConfigError(f"declaration.subject_types must be from {', '.join(SUBJECT_TYPES)}")
    collections = _string_list(section, "subject_collections")
    for nsid in collections or []:
        try:
            syntax.check_nsid(nsid)
        except ValueError as exc:
            raise ConfigError(f"declaration.subject_collections: {exc}") from None
    return Declaration(
        definitions=definitions,
        extra_values=extra_values,
        reason_types=_string_list(section, "reason_types"),
        subject_types=subject_types,
        subject_collections=collections,
    )
