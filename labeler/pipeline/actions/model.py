"""The Actioner's vocabulary: an action to queue (`ActionSpec`), an action row (`Action`), what an attempt came to
(`Outcome`), and what every action kind implements (`ActionKind`).

States of a row:

    pending ──claim──► running ──Outcome──► done | skipped | failed      (terminal)
       ▲                  │
       └── retry (backoff)┘                 pending ──reversed before its first attempt──► cancelled

`done` changed something (a label written, a takedown applied); `skipped` needed nothing (already labelled,
not hosted on our PDS, nothing left to reverse); `failed` was refused for good (wrong admin password, a 4xx) or
ran out of attempts. `outcome` holds the stable code behind the state, `detail` the words for people.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal, Protocol

State = Literal["pending", "running", "done", "skipped", "failed", "cancelled"]
TERMINAL: Final = ("done", "skipped", "failed", "cancelled")
OPS: Final = ("apply", "reverse")


@dataclass(frozen=True)
class ActionSpec:
    """An action to put in the outbox. `dedupe_key` names the intent: queuing it again adds nothing."""

    kind: str
    subject_uri: str
    params: dict[str, Any]
    dedupe_key: str
    actor: str
    subject_cid: str | None = None
    op: str = "apply"
    decision: str | None = None
    job_id: int | None = None
    rule: str | None = None
    evidence: dict[str, Any] | None = None
    notify: bool = False
    reverses: int | None = None


@dataclass(frozen=True)
class Action:
    """An outbox row, as kinds, `explain` and the consoles see it."""

    id: int
    kind: str
    op: str
    decision: str | None
    job_id: int | None
    rule: str | None
    subject_uri: str
    subject_cid: str | None
    params: dict[str, Any]
    evidence: dict[str, Any] | None
    notify: bool
    state: str
    attempts: int
    next_attempt_at: float
    outcome: str | None
    detail: str | None
    result: dict[str, Any] | None
    reverses: int | None
    reversed_by: int | None
    actor: str
    dedupe_key: str
    created_at: str
    updated_at: str
    finished_at: str | None

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "op": self.op, "state": self.state, "outcome": self.outcome,
            "detail": self.detail, "subject": {"uri": self.subject_uri, "cid": self.subject_cid},
            "params": self.params, "result": self.result, "decision": self.decision, "job_id": self.job_id,
            "rule": self.rule, "attempts": self.attempts, "reverses": self.reverses, "reversed_by": self.reversed_by,
            "actor": self.actor, "created_at": self.created_at, "updated_at": self.updated_at,
            "finished_at": self.finished_at,
        }  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to. `state` "retry" puts the row back with backoff (or after `retry_after`)."""

    state: Literal["done", "skipped", "failed", "retry"]
    code: str
    detail: str | None = None
    result: dict[str, Any] | None = field(default=None)
    retry_after: float | None = None


def done(code: str, detail: str | None = None, **result: Any) -> Outcome:
    return Outcome("done", code, detail, result or None)


def skipped(code: str, detail: str | None = None, **result: Any) -> Outcome:
    return Outcome("skipped", code, detail, result or None)


def refused(code: str, detail: str) -> Outcome:
    """Permanently refused: the same request would fail the same way (a wrong password, a 4xx)."""
    return Outcome("failed", code, detail)


def unavailable(code: str, detail: str, retry_after: float | None = None) -> Outcome:
    """Worth trying again later: the other side is down, slow or busy."""
    return Outcome("retry", code, detail, retry_after=retry_after)


class ActionKind(Protocol):
    """One kind of action (one module each). `local` kinds touch only our database and are attempted by whoever
    queues them; the others wait for the outbox runner (or one attempt from a command that has none)."""

    name: ClassVar[str]
    local: ClassVar[bool]
    max_attempts: int

    async def apply(self, action: Action) -> Outcome:
        """Carry the action out; an exception counts as a retryable failure."""
        ...

    async def reverse(self, action: Action, original: Action) -> Outcome:
        """Undo `original` (a finished apply of this kind); `action` is the reversal's own row."""
        ...
