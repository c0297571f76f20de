"""The action outbox on both databases: idempotent queuing, exclusive claims, fenced outcomes, retries with
backoff, permanent refusals, reversal bookkeeping, and a restart in the middle of an attempt."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pipeline.harness import eventually
from prometheus_client import CollectorRegistry

from labeler.pipeline.actions.config import ActionsConfig
from labeler.pipeline.actions.dispatch import Dispatcher
from labeler.pipeline.actions.model import Action, ActionSpec, Outcome, done, refused, skipped, unavailable
from labeler.pipeline.actions.outbox import Outbox
from labeler.pipeline.actions.runner import OutboxRunner
from labeler.pipeline.actions.telemetry import ActionMetrics
from labeler.service import Labeler
from labeler.store.schema import metadata

POST = "at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/app.bsky.feed.post/3k"
FAST = ActionsConfig(retry_base_seconds=0.01, retry_cap_seconds=0.05, max_attempts=4)


def spec(key: str, kind: str = "probe", **over: Any) -> ActionSpec:
    values: dict[str, Any] = {"params": {"n": key}, "actor": "test", "decision": "job:1:rule", "job_id": 1}
    values.update(over)
    return ActionSpec(kind=kind, subject_uri=POST, dedupe_key=key, **values)


@dataclass
class Probe:
    """An action kind that answers from a script (one Outcome per attempt) and counts what it was asked."""

    name: ClassVar[str] = "probe"
    local: ClassVar[bool] = False
    script: list[Outcome] = field(default_factory=list)
    max_attempts: int = 4
    applied: list[int] = field(default_factory=list)
    reversed: list[int] = field(default_factory=list)
    gate: asyncio.Event | None = None  # when set, attempts wait for it: an attempt in flight

    async def apply(self, action: Action) -> Outcome:
        if self.gate is not None:
            await self.gate.wait()
        self.applied.append(action.id)
        return self.script.pop(0) if self.script else done("applied")

    async def reverse(self, action: Action, original: Action) -> Outcome:
        self.reversed.append(original.id)
        return done("reversed")


def dispatcher(outbox: Outbox, probe: Probe, config: ActionsConfig = FAST) -> Dispatcher:
    def followups(action: Action) -> list[ActionSpec]:
        return [spec(f"note-{action.id}", kind="note")] if action.kind == "probe" and action.state == "done" else []

    return Dispatcher(outbox, {"probe": probe}, config, ActionMetrics(CollectorRegistry()), followups)


async def state_is(outbox: Outbox, action_id: int, state: str) -> bool:
    action = await outbox.get(action_id)
    return action is not None and action.state == state


async def attempt_all(outbox: Outbox, work: Dispatcher) -> int:
    """Claim and attempt whatever is due now; how many were attempted."""
    claimed = await outbox.claim(limit=100, lease_seconds=30)
    for action in claimed:
        await work.attempt(action)
    return len(claimed)


async def test_queuing_is_idempotent_and_claims_are_exclusive(labeler: Labeler) -> None:
    first, _ = await Outbox(labeler.engine).submit([spec("a"), spec("b"), spec("a")])
    again, _ = await Outbox(labeler.engine).submit([spec("b"), spec("c")])
    assert [a.dedupe_key for a in first] == ["a", "b", "a"] and first[0].id == first[2].id
    assert again[0].id == first[1].id and again[1].id not in {a.id for a in first}
    # Two processes claiming at once never get the same row.
    one, two = Outbox(labeler.engine), Outbox(labeler.engine)
    grabs = await asyncio.gather(*(o.claim(limit=2, lease_seconds=30) for o in (one, two, one, two)))
    ids = [a.id for grab in grabs for a in grab]
    assert sorted(ids) == sorted({a.id for a in first + again}) and len(ids) == 3
    assert all(a.state == "running" and a.attempts == 1 for grab in grabs for a in grab)


async def test_an_expired_lease_comes_back_and_the_stale_attempt_changes_nothing(labeler: Labeler) -> None:
    clock = [1000.0]
    outbox = Outbox(labeler.engine, clock=lambda: clock[0])
    await outbox.submit([spec("a")])
    [stale] = await outbox.claim(limit=1, lease_seconds=10)
    assert await outbox.claim(limit=1, lease_seconds=10) == []
    clock[0] += 11  # the process holding it died
    [fresh] = await outbox.claim(limit=1, lease_seconds=10)
    assert (fresh.id, fresh.attempts) == (stale.id, 2)
    assert not await outbox.finish(stale, "done", "applied")  # fenced: the first claim is gone
    assert await outbox.busy() == 1  # in flight: `labeler worker --drain` waits for it
    assert await outbox.finish(fresh, "pending", "http-503", retry_in=60)
    assert await outbox.busy() == 0  # waiting out its backoff: not due
    clock[0] += 61
    [again] = await outbox.claim(limit=1, lease_seconds=10)
    assert await outbox.finish(again, "done", "applied")
    assert (await outbox.get(fresh.id)).state == "done"  # type: ignore[union-attr]


async def test_retry_with_backoff_then_done_and_the_webhook_followup_in_the_same_write(labeler: Labeler) -> None:
    outbox = Outbox(labeler.engine)
    probe = Probe([unavailable("http-503", "down"), unavailable("timeout", "slow", retry_after=0.0)])
    work = dispatcher(outbox, probe)
    [action], _ = await outbox.submit([spec("a")])
    assert await attempt_all(outbox, work) == 1
    waiting = await outbox.get(action.id)
    assert waiting is not None and (waiting.state, waiting.outcome, waiting.detail) == ("pending", "http-503", "down")
    assert waiting.next_attempt_at > action.next_attempt_at
    await asyncio.sleep(0.06)
    await attempt_all(outbox, work)
    await attempt_all(outbox, work)  # Retry-After 0: due at once
    finished = await outbox.get(action.id)
    assert finished is not None and (finished.state, finished.outcome, finished.attempts) == ("done", "applied", 3)
    [note] = await outbox.list(kind="note")
    assert note.dedupe_key == f"note-{action.id}" and note.state == "pending"
    assert work.metrics.finished.labels(kind="probe", op="apply", state="done")._value.get() == 1
    assert work.metrics.retries.labels(kind="probe", cause="http-503")._value.get() == 1


async def test_a_refusal_is_final_logged_and_not_retried(labeler: Labeler, caplog: pytest.LogCaptureFixture) -> None:
    outbox = Outbox(labeler.engine)
    probe = Probe([refused("http-401", "the PDS refused the admin password")])
    work = dispatcher(outbox, probe)
    [action], _ = await outbox.submit([spec("a")])
    with caplog.at_level(logging.ERROR, logger="labeler.pipeline.actions.dispatch"):
        await attempt_all(outbox, work)
    for _ in range(3):
        assert await attempt_all(outbox, work) == 0  # nothing more is ever tried
    failed = await outbox.get(action.id)
    assert failed is not None and (failed.state, failed.outcome, failed.attempts) == ("failed", "http-401", 1)
    [line] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "failed for good" in line.getMessage() and "admin password" in line.getMessage()
    assert work.metrics.finished.labels(kind="probe", op="apply", state="failed")._value.get() == 1
    # The operator fixed it: another round.
    [again] = await outbox.requeue([action.id])
    assert (again.state, again.attempts) == ("pending", 0)
    await attempt_all(outbox, work)
    assert (await outbox.get(action.id)).state == "done"  # type: ignore[union-attr]


async def test_out_of_attempts_is_a_recorded_failure(labeler: Labeler) -> None:
    outbox = Outbox(labeler.engine)
    work = dispatcher(outbox, Probe([unavailable("unreachable", "refused")] * 10, max_attempts=2))
    [action], _ = await outbox.submit([spec("a")])
    for _ in range(10):
        await attempt_all(outbox, work)
        await asyncio.sleep(0.06)
    gave_up = await outbox.get(action.id)
    assert gave_up is not None and (gave_up.state, gave_up.outcome, gave_up.attempts) == ("failed", "gave-up", 2)
    assert "unreachable: refused" in (gave_up.detail or "")


async def test_reversing_cancels_the_untried_and_reverses_the_tried_after_they_finish(labeler: Labeler) -> None:
    outbox = Outbox(labeler.engine)
    probe = Probe()
    work = dispatcher(outbox, probe)
    rows, _ = await outbox.submit([spec("tried"), spec("in-flight"), spec("untried"), spec("other", decision="x")])
    tried, in_flight, untried, other = rows
    [claimed] = await outbox.claim(ids=[tried.id], limit=1, lease_seconds=30)
    await work.attempt(claimed)
    [running] = await outbox.claim(ids=[in_flight.id], limit=1, lease_seconds=30)

    def reversal(original: Action) -> ActionSpec:
        return spec(f"reverse|{original.id}", op="reverse", reverses=original.id)

    reversals = await outbox.reverse("job:1:rule", reversal, kinds=["probe"], reason="rejected by test")
    assert [r.reverses for r in reversals] == [tried.id, in_flight.id]
    assert await outbox.reverse("job:1:rule", reversal, kinds=["probe"], reason="twice") == reversals
    cancelled = await outbox.get(untried.id)
    assert cancelled is not None and (cancelled.state, cancelled.outcome) == ("cancelled", "reversed")
    assert (await outbox.get(other.id)).state == "pending"  # type: ignore[union-attr]
    # The reversal of the attempt in flight waits for it.
    due = await outbox.claim(limit=10, lease_seconds=30)
    assert {a.reverses for a in due if a.op == "reverse"} == {tried.id}
    for action in due:
        await work.attempt(action)
    assert await outbox.claim(ids=[r.id for r in reversals], limit=2, lease_seconds=30) == []
    await work.attempt(running)
    [late] = await outbox.claim(ids=[reversals[1].id], limit=1, lease_seconds=30)
    await work.attempt(late)
    assert probe.reversed == [tried.id, in_flight.id]
    linked = await outbox.many([tried.id, in_flight.id])
    assert [a.reversed_by for a in linked] == [r.id for r in reversals]


async def test_a_restart_mid_attempt_does_it_exactly_once(labeler: Labeler) -> None:
    outbox = Outbox(labeler.engine)
    probe = Probe(gate=asyncio.Event())
    runner = OutboxRunner(outbox, dispatcher(outbox, probe), concurrency=2, lease_seconds=30, poll=0.05)
    [action], _ = await outbox.submit([spec("a")])
    runner.start()
    await eventually(lambda: state_is(outbox, action.id, "running"), what="the attempt in flight")
    await runner.stop(grace=0.1)  # the process stops while the request is in flight
    back = await outbox.get(action.id)
    assert back is not None and (back.state, back.outcome) == ("pending", "interrupted") and probe.applied == []
    probe.gate.set()  # type: ignore[union-attr]
    second = OutboxRunner(outbox, dispatcher(outbox, probe), concurrency=2, lease_seconds=30, poll=0.05)
    second.start()
    await eventually(lambda: state_is(outbox, action.id, "done"), what="the second attempt")
    await asyncio.sleep(0.2)  # time for a second attempt, if there were one
    await second.stop(grace=1)
    assert probe.applied == [action.id]
    assert (await outbox.get(action.id)).state == "done"  # type: ignore[union-attr]


async def test_skips_and_unknown_kinds_are_recorded(labeler: Labeler) -> None:
    outbox = Outbox(labeler.engine)
    work = dispatcher(outbox, Probe([skipped("already", "nothing to do")]))
    [mine, stranger], _ = await outbox.submit([spec("a"), spec("b", kind="carrier-pigeon")])
    await attempt_all(outbox, work)
    assert [(a.state, a.outcome) for a in await outbox.many([mine.id, stranger.id])] == [
        ("skipped", "already"), ("failed", "not-configured"),
    ]  # fmt: skip


async def test_migration_matches_table_definitions(labeler: Labeler) -> None:
    mine = ("actions", "entry_states", "entry_hits", "review_items", "altitude_cases", "bank_changes")

    def diff(conn: Any) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return [d for d in compare_metadata(context, metadata) if any(f"'{name}'" in repr(d) for name in mine)]

    async with labeler.engine.connect() as conn:
        assert await conn.run_sync(diff) == []
