"""From a decision to the rows that carry it out: one `ActionSpec` per action, each with the decision's evidence.

Both paths use it: the pipeline's automatic actions (`applier`) and a person's confirmation (`decisions`), so a
takedown queued by either is the same intent (the same dedupe key) and happens once. Everything needed is in the
evidence (`labeler.pipeline.evidence`): the job, the subject, the image, the match, the rule.

A record takedown is two actions, the post (`com.atproto.repo.strongRef`) and its blob
(`com.atproto.admin.defs#repoBlobRef`); an account takedown is one (`#repoRef`). A report is about the post, or
about the account for rules whose subject is the account.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from labeler.pipeline.actions.model import ActionSpec
from labeler.pipeline.policy import Rule, account_of
from labeler.reports.subject import REPO_REF, STRONG_REF

REPO_BLOB_REF: Final = "com.atproto.admin.defs#repoBlobRef"


@dataclass(frozen=True)
class Intent:
    """Who acts, and how their labels are written: the pipeline on its own, or a person confirming."""

    actor: str
    via: str  # pipeline | review
    reason: str
    respect_negations: bool  # the pipeline never overrides a moderator's negation; a person's confirmation does


def key_for(job_id: int, rule: str) -> str:
    """The key that groups one decision's actions (and their reversals): its job and its rule."""
    return f"job:{job_id}:{rule}"


def decision_key(evidence: dict[str, Any]) -> str | None:
    """The decision key recorded in evidence; None for evidence that names no job and rule (an item made by hand)."""
    job_id, rule = evidence.get("job_id"), evidence.get("rule")
    if isinstance(job_id, int) and isinstance(rule, dict) and isinstance(rule.get("name"), str):
        return key_for(job_id, rule["name"])
    return None


def evidence_rule(evidence: dict[str, Any], labels: Sequence[str]) -> Rule:
    """The rule a decision was made under, as its evidence recorded it; without one, a rule that only labels
    `labels` (so confirming an item whose evidence names no rule publishes its values and nothing else)."""
    raw = evidence.get("rule")
    if isinstance(raw, dict):
        try:
            return Rule.from_json(raw)
        except TypeError:
            pass
    return Rule("review", ("*",), tuple(labels))


def plan(
    evidence: dict[str, Any],
    rule: Rule,
    kinds: Sequence[str],
    *,
    key: str,
    subject_uri: str,
    subject_cid: str | None,
    intent: Intent,
) -> list[ActionSpec]:
    """The specs for `kinds` of `rule` (policy.KINDS order; "webhook" marks the others for notification), grouped
    under the decision `key`. Every row is filed under the decision's subject (what `explain` is asked about); what
    a takedown or report targets is in its params."""
    job_id = evidence.get("job_id")
    common: dict[str, Any] = {
        "actor": intent.actor,
        "decision": key,
        "job_id": job_id if isinstance(job_id, int) else None,
        "rule": rule.name,
        "notify": "webhook" in kinds,
    }

    def spec(kind: str, target: str, params: dict[str, Any]) -> ActionSpec:
        return ActionSpec(
            kind=kind,
            subject_uri=subject_uri,
            subject_cid=subject_cid,
            params=params,
            dedupe_key=f"{key}|{kind}|{target}",
            evidence={**evidence, "action": kind},
            **common,
        )

    specs = []
    if "label" in kinds:
        params = {"vals": list(rule.labels), "via": intent.via, "reason": intent.reason}
        specs.append(spec("label", "", {**params, "respect_negations": intent.respect_negations}))
    if "review" in kinds:
        specs.append(spec("review", "", {"vals": list(rule.labels)}))
    if "takedown" in kinds:
        for target, ref in takedown_refs(evidence, rule):
            specs.append(spec("takedown", target, {"subject": ref}))
    if "report" in kinds:
        ref = report_ref(evidence, rule)
        reason = report_reason_text(evidence)
        specs.append(spec("report", "", {"subject": ref, "reason_type": rule.report_reason, "reason": reason}))
    return specs


def takedown_refs(evidence: dict[str, Any], rule: Rule) -> list[tuple[str, dict[str, Any]]]:
    """(target, subject ref) pairs for the rule's takedown of the decision's post and image, or of the account."""
    post, image = evidence["subject"], evidence["image"]
    if rule.takedown_subject == "account":
        return [("account", {"$type": REPO_REF, "did": account_of(post["uri"])})]
    refs = []
    if post.get("cid") and str(post["uri"]).startswith("at://"):
        refs.append(("record", {"$type": STRONG_REF, "uri": post["uri"], "cid": post["cid"]}))
    refs.append(("blob", {"$type": REPO_BLOB_REF, "did": image["did"], "cid": image["blob_cid"]}))
    return refs


def report_ref(evidence: dict[str, Any], rule: Rule) -> dict[str, Any]:
    post = evidence["subject"]
    if rule.subject == "account" or not post.get("cid") or not str(post["uri"]).startswith("at://"):
        return {"$type": REPO_REF, "did": account_of(post["uri"])}
    return {"$type": STRONG_REF, "uri": post["uri"], "cid": post["cid"]}


def report_reason_text(evidence: dict[str, Any]) -> str:
    """What the upstream moderators read: which list matched, how closely, and the hash to check it against."""
    match = evidence["match"]
    signal = str(evidence.get("signal_type", "pdq"))
    external = f" ({match['external_id']})" if match.get("external_id") else ""
    return (
        f"Hash match: bank {match['bank']} entry {match['entry_id']}{external}, {signal} distance "
        f"{match['distance']}, image {evidence['image']['blob_cid']}, {signal} {evidence.get(signal)}. "
        "Found by an automated labeler."
    )
