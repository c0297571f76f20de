"""Policy: what a bank match leads to. Each rule names its banks and, per action, the distance up to which it acts.

Configured in `labeler.toml` (README "Policy"):

    [[policy.rules]]
    name = "ncmec"                 # shown in evidence and `explain`
    banks = ["NCMEC_CSAM"]         # bank names; "*" = every bank
    signals = ["pdq", "md5"]       # signal types the rule acts on (pdq, md5, sha256); default: every one
    labels = ["!hide"]             # what a label action publishes (also when a person confirms a review item)
    label_distance = -1            # distance ≤ this → label at once; -1: only after a person confirms
    review_distance = 31           # above label_distance and ≤ this → review queue; -1: never
    takedown_distance = 10         # ≤ this → take down on our PDS; -1: only after confirmation; absent: never
    takedown_subject = "record"    # record (the post and its blob) | account
    report_distance = 10           # ≤ this → report upstream; -1: only after confirmation; absent: never
    report_reason = "tools.ozone.report.defs#reasonChildSafetyCSAM"
    webhook_distance = 31          # ≤ this → each action's outcome is POSTed to the webhook; absent: never
    subject = "post"               # what labels and reports are about: post (uri + cid) | account (author DID)
    priority = 0                   # review queue order: higher first, before distance (-1000 … 1000)

A person confirming a review item makes the rule do everything it does for a certain match: its labels, and its
takedown and report when the rule has them. Without rules the default is conservative: every bank → the first
declared label value (`csam-hash-match` by default), labelled at distance ≤ 10 and reviewed up to 31 (HMA's
threshold). PDQ distances up to ~10 are near-certain copies; 11–31 include resized, re-encoded or cropped copies
but also the rare false positive, which a person should see first. Banks marked child-safety get their own
default rule (`child_safety_rule`): no public label before a person confirms. Every matching rule acts, so one
match can label the post and also queue the account for review. Exact matches (MD5, SHA-256) are at distance 0; a
rule that should only send them to review says `signals = ["md5"]`, `label_distance = -1`, `review_distance = 0`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Final, TypeGuard

from labeler.config import ConfigError
from labeler.pipeline.match.base import Match
from labeler.pipeline.signals import SIGNAL_TYPES
from labeler.reports.reasons import APPEALS, KNOWN_REASONS, REASON_OTHER

DEFAULT_LABEL_DISTANCE: Final = 10
DEFAULT_REVIEW_DISTANCE: Final = 31
CONFIRMED: Final = -1  # a threshold that acts only once a person confirms
SUBJECTS: Final = ("post", "account")
TAKEDOWN_SUBJECTS: Final = ("record", "account")
#: Action kinds a rule can take, in the order they are carried out.
KINDS: Final = ("label", "review", "takedown", "report", "webhook")
#: Label values that say nothing about the content (they hide or warn for every subscriber, and need no definition).
GLOBAL_VALUES: Final = frozenset({"!hide", "!warn"})
CSAM_REASON: Final = "tools.ozone.report.defs#reasonChildSafetyCSAM"
_OPTIONAL: Final = ("takedown_distance", "report_distance", "webhook_distance")
MAX_PRIORITY: Final = 1000


@dataclass(frozen=True)
class Rule:
    name: str
    banks: tuple[str, ...]
    labels: tuple[str, ...]
    label_distance: int = DEFAULT_LABEL_DISTANCE
    review_distance: int = DEFAULT_REVIEW_DISTANCE
    subject: str = "post"
    takedown_distance: int | None = None
    takedown_subject: str = "record"
    report_distance: int | None = None
    report_reason: str = REASON_OTHER
    webhook_distance: int | None = None
    signals: tuple[str, ...] = SIGNAL_TYPES
    priority: int = 0  # the console's review queue shows items of higher-priority rules first
    exclude_banks: tuple[str, ...] = ()  # default rules only: banks another default rule covers

    def covers(self, match: Match) -> bool:
        return self.covers_bank(match.bank) and match.signal_type in self.signals

    def covers_bank(self, bank: str) -> bool:
        return ("*" in self.banks or bank in self.banks) and bank not in self.exclude_banks

    def kinds_at(self, distance: int) -> tuple[str, ...]:
        """The actions this rule takes by itself for a match at `distance` (none: the rule does not act)."""
        automatic = {
            "label": distance <= self.label_distance,
            "review": self.label_distance < distance <= self.review_distance,
            "takedown": self.takedown_distance is not None and distance <= self.takedown_distance,
            "report": self.report_distance is not None and distance <= self.report_distance,
        }
        if not any(automatic.values()):
            return ()
        automatic["webhook"] = self.webhook_distance is not None and distance <= self.webhook_distance
        return tuple(kind for kind in KINDS if automatic[kind])

    def confirmed_kinds(self) -> tuple[str, ...]:
        """What a person's confirmation makes the rule do: its labels, and every other action it has at all."""
        enabled = {"label": True, "review": False}
        enabled.update(
            {kind: getattr(self, f"{kind}_distance") is not None for kind in ("takedown", "report", "webhook")}
        )
        return tuple(kind for kind in KINDS if enabled[kind])

    def descriptive_labels(self) -> list[str]:
        """Values that tell a reader what the content is (everything but the global `!hide` / `!warn`)."""
        return [value for value in self.labels if value not in GLOBAL_VALUES]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "banks": list(self.banks), "labels": list(self.labels),
            "label_distance": self.label_distance, "review_distance": self.review_distance, "subject": self.subject,
            "signals": list(self.signals),
        }  # fmt: skip
        for key in _OPTIONAL:
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.takedown_distance is not None:
            out["takedown_subject"] = self.takedown_subject
        if self.report_distance is not None:
            out["report_reason"] = self.report_reason
        if self.priority:
            out["priority"] = self.priority
        if self.exclude_banks:
            out["exclude_banks"] = list(self.exclude_banks)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rule:
        """The rule as recorded in evidence (`to_json`): a review item is confirmed under the rule that queued it."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**values)


@dataclass(frozen=True)
class Decision:
    """One rule's verdict on one image: the actions `kinds` it takes on `subject_uri` (+ `subject_cid`)."""

    rule: Rule
    kinds: tuple[str, ...]
    subject_uri: str
    subject_cid: str | None
    match: Match  # the nearest match in the rule's banks
    held: str | None = None  # why the decision was held back for a person (flood control, a review-only entry)


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
            kinds = rule.kinds_at(nearest.distance)
            if not kinds:
                continue
            if rule.subject == "account":
                decisions.append(Decision(rule, kinds, account_of(subject_uri), None, nearest))
            else:
                decisions.append(Decision(rule, kinds, subject_uri, subject_cid, nearest))
        return decisions

    def rules_for(self, bank: str) -> list[Rule]:
        return [rule for rule in self.rules if rule.covers_bank(bank)]


def account_of(subject_uri: str) -> str:
    """The DID a subject belongs to: `at://did/…` → did; a DID stays itself."""
    if subject_uri.startswith("at://"):
        return subject_uri[len("at://") :].split("/", 1)[0]
    return subject_uri


def child_safety_rule(banks: Sequence[str], *, takedown: bool, report: bool) -> Rule:
    """The default for banks marked child-safety: nothing public before a person confirms.

    A descriptive label on a post (`csam-hash-match`) is readable by anyone through queryLabels and
    subscribeLabels: a public index of where known abuse imagery is. So a near-certain match (distance ≤ 10) is
    taken down where we administer the PDS and reported upstream, and every match goes to review; a confirmed
    match is hidden with the global `!hide`, which says nothing about why.
    """
    near = DEFAULT_LABEL_DISTANCE
    return Rule(
        "child-safety",
        tuple(banks),
        ("!hide",),
        label_distance=CONFIRMED,
        review_distance=DEFAULT_REVIEW_DISTANCE,
        takedown_distance=near if takedown else None,
        report_distance=near if report else None,
        report_reason=CSAM_REASON,
    )


def load_policy(
    extra: dict[str, Any],
    default_label: str,
    *,
    child_safety_banks: Sequence[str] = (),
    takedown: bool = False,
    report: bool = False,
) -> Policy:
    """Rules from the `[policy]` table of the settings' TOML extras; ConfigError names the bad rule.

    Without rules: the child-safety default for `child_safety_banks` (with a takedown or a report only where
    those are configured), and the conservative label/review default for every other bank.
    """
    table = extra.get("policy", {})
    if not isinstance(table, dict):
        raise ConfigError("[policy] must be a table")
    raw_rules = table.get("rules")
    if raw_rules is None:
        rules = [Rule("default", ("*",), (default_label,), exclude_banks=tuple(child_safety_banks))]
        if child_safety_banks:
            rules.insert(0, child_safety_rule(child_safety_banks, takedown=takedown, report=report))
        return Policy(rules)
    if not isinstance(raw_rules, list):
        raise ConfigError("[[policy.rules]] must be an array of tables")
    return Policy([_rule(i, raw) for i, raw in enumerate(raw_rules)])


_KEYS: Final = frozenset(
    {"name", "banks", "labels", "label_distance", "review_distance", "subject", "signals", "takedown_subject"}
    | {"report_reason", "priority", *_OPTIONAL}
)


def _rule(position: int, raw: Any) -> Rule:
    where = f"policy rule #{position + 1}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    name = raw.get("name", f"rule-{position + 1}")
    banks, labels = raw.get("banks", ["*"]), raw.get("labels")
    if not _strings(banks):
        raise ConfigError(f"{where}: banks must be a non-empty list of bank names")
    if not _strings(labels):
        raise ConfigError(f"{where}: labels must be a non-empty list of label values")
    distances = {
        "label_distance": raw.get("label_distance", DEFAULT_LABEL_DISTANCE),
        "review_distance": raw.get("review_distance", DEFAULT_REVIEW_DISTANCE),
        **{key: raw.get(key) for key in _OPTIONAL},
    }
    for key, value in distances.items():
        if value is None and key in _OPTIONAL:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not -1 <= value <= 256:
            raise ConfigError(f"{where}: {key} must be an integer from -1 (only when confirmed / never) to 256")
    subject = raw.get("subject", "post")
    if subject not in SUBJECTS:
        raise ConfigError(f"{where}: subject must be one of {', '.join(SUBJECTS)}")
    takedown_subject = raw.get("takedown_subject", "record")
    if takedown_subject not in TAKEDOWN_SUBJECTS:
        raise ConfigError(f"{where}: takedown_subject must be one of {', '.join(TAKEDOWN_SUBJECTS)}")
    report_reason = raw.get("report_reason", REASON_OTHER)
    if report_reason not in KNOWN_REASONS or report_reason in APPEALS:
        raise ConfigError(f"{where}: report_reason must be a known reason type (not an appeal): {report_reason!r}")
    signals = raw.get("signals", list(SIGNAL_TYPES))
    if not _strings(signals) or not set(signals) <= set(SIGNAL_TYPES):
        raise ConfigError(f"{where}: signals must be a non-empty list of {', '.join(SIGNAL_TYPES)}")
    priority = raw.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool) or abs(priority) > MAX_PRIORITY:
        raise ConfigError(f"{where}: priority must be an integer from -{MAX_PRIORITY} to {MAX_PRIORITY}")
    return Rule(
        str(name),
        tuple(banks),
        tuple(labels),
        priority=priority,
        subject=subject,
        signals=tuple(signals),
        takedown_subject=takedown_subject,
        report_reason=report_reason,
        **distances,
    )


def _strings(value: Any) -> TypeGuard[list[str]]:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)
