"""Report reason types (protocol.md §4.1) and whether our declaration accepts one (protocol.md §4.3).

Two vocabularies are in use: the legacy `com.atproto.moderation.defs#reason*` tokens and Ozone's finer
`tools.ozone.report.defs#reason*` set. A declaration may list either. As in Ozone (`mod-service/profile.ts`), a
new token is accepted when the declaration lists it, or lists the legacy token it maps to: declaring
`com.atproto.moderation.defs#reasonViolation` also admits `tools.ozone.report.defs#reasonChildSafetyCSAM`. The
mapping only runs new → old: declaring a new token does not admit the coarse legacy one, because the labeler
asked for the finer classification. The table below is Ozone's, so both services agree on every token.
"""

from __future__ import annotations

from typing import Final

LEGACY: Final = "com.atproto.moderation.defs#"
OZONE: Final = "tools.ozone.report.defs#"

REASON_SPAM: Final = LEGACY + "reasonSpam"
REASON_VIOLATION: Final = LEGACY + "reasonViolation"
REASON_MISLEADING: Final = LEGACY + "reasonMisleading"
REASON_SEXUAL: Final = LEGACY + "reasonSexual"
REASON_RUDE: Final = LEGACY + "reasonRude"
REASON_OTHER: Final = LEGACY + "reasonOther"
REASON_APPEAL: Final = LEGACY + "reasonAppeal"

LEGACY_REASONS: Final = frozenset(
    {REASON_SPAM, REASON_VIOLATION, REASON_MISLEADING, REASON_SEXUAL, REASON_RUDE, REASON_OTHER, REASON_APPEAL}
)

# New (Ozone) token → the legacy token it refines; the same table as Ozone's NEW_TO_OLD_REASON_MAPPING.
_FAMILIES: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "Violence": (
        REASON_VIOLATION,
        ("Animal", "Threats", "GraphicContent", "Glorification", "ExtremistContent", "Trafficking", "Other"),
    ),
    "Sexual": (REASON_SEXUAL, ("AbuseContent", "NCII", "Deepfake", "Animal", "Unlabeled", "Other")),
    "ChildSafety": (REASON_VIOLATION, ("CSAM", "Groom", "Privacy", "Harassment", "Other")),
    "Harassment": (REASON_RUDE, ("Troll", "Targeted", "HateSpeech", "Doxxing", "Other")),
    "Misleading": (REASON_MISLEADING, ("Bot", "Impersonation", "Spam", "Scam", "Elections", "Other")),
    "Rule": (REASON_VIOLATION, ("SiteSecurity", "ProhibitedSales", "BanEvasion", "Other")),
    "SelfHarm": (REASON_VIOLATION, ("Content", "ED", "Stunts", "Substances", "Other")),
}
NEW_TO_OLD: Final[dict[str, str]] = {
    OZONE + "reasonAppeal": REASON_APPEAL,
    OZONE + "reasonOther": REASON_OTHER,
    **{f"{OZONE}reason{family}{leaf}": legacy for family, (legacy, leaves) in _FAMILIES.items() for leaf in leaves},
}
# The one exception to "a family maps to one legacy token" in Ozone's table.
NEW_TO_OLD[OZONE + "reasonMisleadingSpam"] = REASON_SPAM

KNOWN_REASONS: Final = LEGACY_REASONS | frozenset(NEW_TO_OLD)
APPEALS: Final = frozenset({REASON_APPEAL, OZONE + "reasonAppeal"})
MAX_REASON_TYPE_LENGTH: Final = 256


def is_appeal(reason_type: str) -> bool:
    return reason_type in APPEALS


def reason_type_problem(reason_type: str, declared: list[str] | None) -> str | None:
    """Why `reason_type` is not accepted under the declared `reasonTypes`, or None if it is.

    `declared` None means the declaration does not restrict reasons: any known token is accepted. A token the
    declaration lists is accepted even if we do not know it (operators may declare custom reasons).
    """
    if declared is not None:
        if reason_type in declared or NEW_TO_OLD.get(reason_type) in declared:
            return None
        if not declared:
            return "this labeler does not accept reports (its declaration lists no reasonTypes)"
        return f"reason type {reason_type!r} is not among this labeler's declared reasonTypes"
    if reason_type in KNOWN_REASONS:
        return None
    return f"unknown reason type {reason_type!r}"
