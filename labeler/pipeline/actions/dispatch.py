"""One attempt at one claimed action: hand it to its kind, then record what came of it.

    kind says            recorded as                                               logged
    done / skipped       that state, with the kind's result; webhook events queued  debug
    failed (refused)     failed: no retry, ever (until an operator requeues it)    ERROR
    retry                pending again after backoff (or the server's Retry-After)  info
    retry, out of tries  failed / gave-up                                           ERROR
    an exception         as retry ("internal"), with the traceback                  ERROR

A permanent refusal (a wrong admin password, a 4xx) therefore costs one request per action, not a retry storm,
and ends with a recorded outcome, a metric and an ERROR line that says what to fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from labeler.pipeline.actions.config import ActionsConfig
from labeler.pipeline.actions.model import Action, ActionKind, ActionSpec, Outcome, refused, unavailable
from labeler.pipeline.actions.outbox import Outbox
from labeler.pipeline.actions.telemetry import ActionMetrics
from labeler.pipeline.jobs import backoff_delay

log = logging.getLogger(__name__)

Followups = Callable[[Action], Sequence[ActionSpec]]


def _what_changed(outcome: Outcome) -> str:
    """The values written or negated, or the outcome's own detail (a review item's id, a PDS's answer)."""
    result = outcome.result or {}
    values = result.get("written") or result.get("negated")
    if values:
        return ": " + ", ".join(values)
    return f" ({outcome.detail})" if outcome.detail else ""


class Dispatcher:
    def __init__(
        self,
        outbox: Outbox,
        kinds: Mapping[str, ActionKind],
        config: ActionsConfig,
        metrics: ActionMetrics,
        followups: Followups,
    ) -> None:
        self.outbox = outbox
        self.kinds = kinds
        self.config = config
        self.metrics = metrics
        self.followups = followups

    async def attempt(self, action: Action) -> None:
        """Attempt a claimed action and record the outcome. Cancelled (shutdown), the claim is handed back."""
        kind = self.kinds.get(action.kind)
        try:
            if kind is None:
                outcome = refused("not-configured", f"no {action.kind!r} action is configured in this process")
            elif action.op == "reverse":
                original = await self.outbox.get(action.reverses or 0)
                if original is None:
                    outcome = refused("no-original", f"action {action.reverses} is gone")
                else:
                    outcome = await kind.reverse(action, original)
            else:
                outcome = await kind.apply(action)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.outbox.finish(action, "pending", "interrupted", retry_in=0.0))
            raise
        except Exception as exc:  # a bug or an unexpected failure: retried, and the traceback logged
            log.exception("action %d (%s %s): unexpected failure", action.id, action.kind, action.op)
            outcome = unavailable("internal", f"{type(exc).__name__}: {exc}")
        await self.record(action, outcome, kind.max_attempts if kind is not None else 1)

    async def record(self, action: Action, outcome: Outcome, max_attempts: int) -> None:
        what = f"action {action.id} ({action.kind} {action.op} on {action.subject_uri})"
        if outcome.state == "retry" and action.attempts < max_attempts:
            delay = outcome.retry_after
            if delay is None:
                delay = backoff_delay(
                    action.attempts, base=self.config.retry_base_seconds, cap=self.config.retry_cap_seconds
                )
            self.metrics.retries.labels(kind=action.kind, cause=outcome.code).inc()
            log.info(
                "%s: attempt %d failed (%s: %s); next in %.1fs",
                what,
                action.attempts,
                outcome.code,
                outcome.detail,
                delay,
            )
            await self.outbox.finish(action, "pending", outcome.code, detail=outcome.detail, retry_in=delay)
            return
        if outcome.state == "retry":
            detail = f"{outcome.code}: {outcome.detail}"
            outcome = Outcome("failed", "gave-up", f"gave up after {action.attempts} attempts; last: {detail}")
        if outcome.state == "failed":
            log.error("%s failed for good: %s (%s)", what, outcome.detail, outcome.code)
        else:  # what was done (a label emitted, a review item queued, a takedown, a report), one line each
            log.info("%s: %s %s%s", what, outcome.state, outcome.code, _what_changed(outcome))
        finished = replace(
            action, state=outcome.state, outcome=outcome.code, detail=outcome.detail, result=outcome.result
        )
        recorded = await self.outbox.finish(
            action,
            outcome.state,
            outcome.code,
            detail=outcome.detail,
            result=outcome.result,
            then=self.followups(finished),
        )
        if recorded:
            self.metrics.finished.labels(kind=action.kind, op=action.op, state=outcome.state).inc()
        else:
            log.warning("%s: claim lost before its outcome (%s) was recorded", what, outcome.state)
