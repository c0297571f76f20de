"""The pipeline's side of the Actioner: a job's policy decisions become outbox rows, each with its evidence.

What the job records (`result.decisions`) is each decision with the actions it queued and where they stood when
the job finished: local ones (label, review) are done by then; takedowns and reports may still be on their way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from labeler.pipeline.actions.actioner import Actioner
from labeler.pipeline.actions.model import ActionSpec
from labeler.pipeline.actions.plan import Intent, key_for, plan
from labeler.pipeline.evidence import decision_evidence
from labeler.pipeline.jobs import Job
from labeler.pipeline.policy import Decision


class DecisionApplier:
    def __init__(self, actioner: Actioner, *, matcher: str, dihedral: bool) -> None:
        self.actioner = actioner
        self.matcher = matcher
        self.dihedral = dihedral

    async def apply(self, job: Job, decisions: Sequence[Decision]) -> list[dict[str, Any]]:
        """Queue (and, for local kinds, carry out) every decision's actions; returns what was done, for the job."""
        planned: list[tuple[Decision, list[ActionSpec]]] = []
        for decision in decisions:
            evidence = decision_evidence(job, decision, matcher=self.matcher, dihedral=self.dihedral)
            match = decision.match
            reason = f"{match.signal_type} match: bank {match.bank}, distance {match.distance}"
            intent = Intent("pipeline", "pipeline", reason, True)
            specs = plan(
                evidence,
                decision.rule,
                decision.kinds,
                key=key_for(job.id, decision.rule.name),
                subject_uri=decision.subject_uri,
                subject_cid=decision.subject_cid,
                intent=intent,
            )
            planned.append((decision, specs))
        rows = await self.actioner.submit([spec for _, specs in planned for spec in specs])
        by_key = {row.dedupe_key: row for row in rows}
        done = []
        for decision, specs in planned:
            actions = [by_key[spec.dedupe_key] for spec in specs]
            done.append(
                {
                    "rule": decision.rule.name,
                    "kinds": list(decision.kinds),
                    "subject": {"uri": decision.subject_uri, "cid": decision.subject_cid},
                    "bank": decision.match.bank,
                    "entry_id": decision.match.entry_id,
                    "distance": decision.match.distance,
                    "signal_type": decision.match.signal_type,
                    "actions": [{"id": a.id, "kind": a.kind, "state": a.state, "outcome": a.outcome} for a in actions],
                }
            )
        return done
