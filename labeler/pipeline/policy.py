"""Policy: which bank matches become labels, which go to human review, and what the label is put on.

Configured in `labeler.toml` (README "Policy"):

    [[policy.rules]]
    name = "ncmec"                 # shown in evidence and `explain`
    banks = ["NCMEC_CSAM"]         # bank names; "*" = every bank
    signals = ["pdq", "md5"]       # signal types the rule acts on (pdq, md5, sha256); default: every one
    labels = ["csam-hash-match"]
    label_distance = 10            # distance ≤ this → label at once (-1: never)
    review_distance = 31           # distance ≤ this (and above label_distance) → review queue (-1: never)
    subject = "post"               # post (the record: uri + cid) | account (the author's DID)

Without rules the default is one conservative rule: every bank → the first declared label value
(`csam-hash-match` by default), labelled at distance ≤ 10 and reviewed up to 31 (HMA's match threshold). PDQ
distances up to ~10 are near-certain copies; 11–31 include resized, re-encoded or cropped copies but also the
rare false positive, which a person should see before a label goes out. Every matching rule acts, so one match
can label the post and also queue the account for review. Exact matches (MD5, SHA-256) are at distance 0; a rule
that should only send them to review says `signals = ["md5"]`, `label_distance = -1`, `review_distance = 0`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeGuard

from labeler.config import ConfigError
from labeler.pipeline.match.base import Match
from labeler.pipeline.signals import SIGNAL_TYPES

DEFAULT_LABEL_DISTANCE: Final = 10
DEFAULT_REVIEW_DISTANCE: Final = 31
SUBJECTS: Final = ("post", "account")


@dataclass(frozen=True)
class Rule:
    name: str
    banks: tuple[str, ...]
    labels: tuple[str, ...]
    label_distance: int = DEFAULT_LABEL_DISTANCE
    review_distance: int = DEFAULT_REVIEW_DISTANCE
    subject: str = "post"
    signals: tuple[str, ...] = SIGNAL_TYPES

    def covers(self, match: Match) -> bool:
        return ("*" in self.banks or match.bank in self.banks) and match.signal_type in self.signals

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "banks": list(self.banks), "labels": list(self.labels),
            "label_distance": self.label_distance, "review_distance": self.review_distance, "subject": self.subject,
            "signals": list(self.signals),
        }  # fmt: skip


@dataclass(frozen=True)
class Decision:
    """One rule's verdict on one image: `action` is "label" or "review", on `subject_uri` (+ `subject_cid`)."""

    rule: Rule
    action: str
    subject_uri: str
    subject_cid: str | None
    match: Match  # the nearest match in the rule's banks


class Policy:
    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)

    def decide(self, matches: Sequence[Match], subject_uri: str, subject_cid: str | None) -> list[Decision]:
        """Decisions for an image's matches (nearest first), at most one per rule."""
        decisions = []
        for rule in self.rules:
            nearest = next((m for m in matches if rule.covers(m)), None)
            if nearest is None:
                continue
            if nearest.distance <= rule.label_distance:
                action = "label"
            elif nearest.distance <= rule.review_distance:
                action = "review"
            else:
                continue
            if rule.subject == "account":
                decisions.append(Decision(rule, action, account_of(subject_uri), None, nearest))
            else:
                decisions.append(Decision(rule, action, subject_uri, subject_cid, nearest))
        return decisions


def account_of(subject_uri: str) -> str:
    """The DID a subject belongs to: `at://did/…` → did; a DID stays itself."""
    if subject_uri.startswith("at://"):
        return subject_uri[len("at://") :].split("/", 1)[0]
    return subject_uri


def load_policy(extra: dict[str, Any], default_label: str) -> Policy:
    """Rules from the `[policy]` table of the settings' TOML extras; ConfigError names the bad rule."""
    table = extra.get("policy", {})
    if not isinstance(table, dict):
        raise ConfigError("[policy] must be a table")
    raw_rules = table.get("rules")
    if raw_rules is None:
        return Policy([Rule("default", ("*",), (default_label,))])
    if not isinstance(raw_rules, list):
        raise ConfigError("[[policy.rules]] must be an array of tables")
    return Policy([_rule(i, raw) for i, raw in enumerate(raw_rules)])


def _rule(position: int, raw: Any) -> Rule:
    where = f"policy rule #{position + 1}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = set(raw) - {"name", "banks", "labels", "label_distance", "review_distance", "subject", "signals"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    name = raw.get("name", f"rule-{position + 1}")
    banks, labels = raw.get("banks", ["*"]), raw.get("labels")
    if not _strings(banks):
        raise ConfigError(f"{where}: banks must be a non-empty list of bank names")
    if not _strings(labels):
        raise ConfigError(f"{where}: labels must be a non-empty list of label values")
    label_distance = raw.get("label_distance", DEFAULT_LABEL_DISTANCE)
    review_distance = raw.get("review_distance", DEFAULT_REVIEW_DISTANCE)
    for key, value in (("label_distance", label_distance), ("review_distance", review_distance)):
        if not isinstance(value, int) or isinstance(value, bool) or not -1 <= value <= 256:
            raise ConfigError(f"{where}: {key} must be an integer from -1 (never) to 256")
    subject = raw.get("subject", "post")
    if subject not in SUBJECTS:
        raise ConfigError(f"{where}: subject must be one of {', '.join(SUBJECTS)}")
    signals = raw.get("signals", list(SIGNAL_TYPES))
    if not _strings(signals) or not set(signals) <= set(SIGNAL_TYPES):
        raise ConfigError(f"{where}: signals must be a non-empty list of {', '.join(SIGNAL_TYPES)}")
    return Rule(str(name), tuple(banks), tuple(labels), label_distance, review_distance, subject, tuple(signals))


def _strings(value: Any) -> TypeGuard[list[str]]:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)
