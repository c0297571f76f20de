"""Between a job's matches and the policy: what false positives and floods taught us.

- **Allow-list.** Entries of `[actions] allow_list_bank` are images a person found wrongly matched. An image
  within `allow_list_distance` of one is not acted on at all (the job ends `no-match` / `allow-listed`); the
  allow-list bank's own matches are never acted on.
- **Disabled entries.** A bank entry disabled as a false positive (HMA's "disable bank content") no longer
  matches; its matches are dropped here, for both matchers, since the state is ours (`entry_states`).
- **Flood control.** A bank entry that suddenly matches many distinct images (`flood_matches` within
  `flood_window_seconds`, e.g. 20 in an hour) is more likely a bad hash (a logo, a blank frame) than a wave of
  abuse: it is switched to review-only, with a WARNING line and `labeler_entries_review_only_total`. Matches of a
  review-only entry go to a person instead of being acted on; `labeler entries clear` switches it back.
- **Audit.** Every state change, including clearing one, appends an `entry_state_changes` row in the same
  transaction: who, through what (console, cli, api, pipeline), and why; `changes` reads it for the audit log.

Images are counted by blob CID, whatever signal matched, so this works for any hash type.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from labeler.pipeline.actions.config import ActionsConfig
from labeler.pipeline.actions.telemetry import ActionMetrics
from labeler.pipeline.match.base import Match
from labeler.pipeline.policy import Decision
from labeler.protocol import syntax
from labeler.store.actions_schema import entry_hits, entry_state_changes, entry_states
from labeler.store.engine import is_sqlite, write_transaction

log = logging.getLogger(__name__)

MODES: Final = ("disabled", "review-only")
_PRUNE_EVERY: Final = 60.0


@dataclass(frozen=True)
class EntryState:
    bank: str
    entry_id: str
    mode: str
    reason: str | None
    actor: str
    created_at: str


@dataclass(frozen=True)
class EntryStateChange:
    """One line of the entry-state audit log: `mode` is the new state, or "clear" (matching again)."""

    id: int
    bank: str
    entry_id: str
    mode: str
    reason: str | None
    actor: str
    via: str | None
    created_at: str


@dataclass(frozen=True)
class Screened:
    """A job's matches after screening: `matches` to decide on, and why the others were left out."""

    matches: list[Match]
    allowed_by: Match | None = None
    disabled: list[Match] = field(default_factory=list)
    review_only: dict[tuple[str, str], str] = field(default_factory=dict)  # (bank, entry) → why

    @property
    def reason(self) -> str | None:
        """Why nothing is left to act on (the job's recorded reason), or None when something is."""
        if self.allowed_by is not None:
            return "allow-listed"
        return "disabled-entries" if self.disabled and not self.matches else None

    def restrict(self, decisions: Sequence[Decision]) -> list[Decision]:
        """Decisions on a review-only entry go to a person instead (their webhook notice stays)."""
        held = []
        for decision in decisions:
            why = self.review_only.get((decision.match.bank, decision.match.entry_id))
            if why is not None:
                kinds = ("review", "webhook") if "webhook" in decision.kinds else ("review",)
                decision = replace(decision, kinds=kinds, held=why)
            held.append(decision)
        return held


class Screen:
    def __init__(
        self,
        engine: AsyncEngine,
        config: ActionsConfig,
        metrics: ActionMetrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.config = config
        self.metrics = metrics
        self._clock = clock
        self._insert = sqlite.insert if is_sqlite(engine) else postgresql.insert
        self._pruned_at = 0.0

    async def screen(self, image: str, matches: Sequence[Match], *, record: bool = True) -> Screened:
        """Screen one image's matches (nearest first); records the hits flood control counts, unless `record` is
        False (an upload-time check: nothing was posted)."""
        allow_bank = self.config.allow_list_bank
        allowed = [m for m in matches if m.bank == allow_bank]
        if allowed and allowed[0].distance <= self.config.allow_list_distance:
            if record:
                self.metrics.suppressed.labels(reason="allow-listed").inc()
            return Screened([], allowed_by=allowed[0])
        candidates = [m for m in matches if m.bank != allow_bank]
        if not candidates:
            return Screened([])
        async with write_transaction(self.engine, "screening matches") as conn:
            states = await self._states(conn, candidates)
            kept = [m for m in candidates if states.get((m.bank, m.entry_id)) != "disabled"]
            if record and self.config.flood_matches > 0:
                await self._count(conn, image, kept, states)
        disabled = [m for m in candidates if m not in kept]
        if disabled and record:
            self.metrics.suppressed.labels(reason="disabled-entry").inc(len(disabled))
        review_only = {key: why for key, why in states.items() if why != "disabled"}
        return Screened(kept, disabled=disabled, review_only=review_only)

    async def _states(self, conn: AsyncConnection, matches: Sequence[Match]) -> dict[tuple[str, str], str]:
        """(bank, entry) → "disabled", or the reason it is review-only."""
        keys = {(m.bank, m.entry_id) for m in matches}
        query = sa.select(entry_states).where(sa.tuple_(entry_states.c.bank, entry_states.c.entry_id).in_(keys))
        return {
            (r.bank, r.entry_id): "disabled" if r.mode == "disabled" else f"review-only: {r.reason}"
            for r in await conn.execute(query)
        }

    async def _count(
        self, conn: AsyncConnection, image: str, matches: Sequence[Match], states: dict[tuple[str, str], str]
    ) -> None:
        """Record this image against each entry; switch an entry that reached the flood threshold to review-only."""
        now = self._clock()
        since = now - self.config.flood_window_seconds
        if now - self._pruned_at > _PRUNE_EVERY:
            await conn.execute(entry_hits.delete().where(entry_hits.c.seen_at < since))
            self._pruned_at = now
        for match in matches:
            key = (match.bank, match.entry_id)
            hit = {"bank": match.bank, "entry_id": match.entry_id, "image": image, "seen_at": now}
            await conn.execute(self._insert(entry_hits).values(hit).on_conflict_do_nothing())
            if key in states:
                continue
            recent = sa.select(sa.func.count()).where(
                entry_hits.c.bank == match.bank, entry_hits.c.entry_id == match.entry_id, entry_hits.c.seen_at >= since
            )
            count = int((await conn.execute(recent)).scalar_one())
            if count < self.config.flood_matches:
                continue
            window = f"{self.config.flood_window_seconds:g}s"
            why = f"flood control: {count} distinct images within {window}"
            await self._set(conn, match.bank, match.entry_id, "review-only", why, "flood-control", "pipeline")
            states[key] = f"review-only: {why}"
            self.metrics.review_only.labels(bank=match.bank).inc()
            log.warning(
                "bank %s entry %s matched %d distinct images within %s: switched to review-only "
                "(a bad hash is likelier than a wave; `labeler entries clear %s %s` switches it back)",
                match.bank, match.entry_id, count, window, match.bank, match.entry_id,
            )  # fmt: skip

    async def set_state(
        self, bank: str, entry_id: str, mode: str, *, reason: str | None, actor: str, via: str | None
    ) -> None:
        """Disable an entry (a false positive) or make it review-only; replaces an earlier state. `via` is what
        the change came through (console, cli, api, …), for the audit log."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        async with write_transaction(self.engine, "entry state write") as conn:
            await self._set(conn, bank, entry_id, mode, reason, actor, via)

    async def _set(
        self,
        conn: AsyncConnection,
        bank: str,
        entry_id: str,
        mode: str,
        reason: str | None,
        actor: str,
        via: str | None,
    ) -> None:
        values = {"mode": mode, "reason": reason, "actor": actor, "created_at": syntax.now()}
        stmt = self._insert(entry_states).values(bank=bank, entry_id=entry_id, **values)
        await conn.execute(stmt.on_conflict_do_update(index_elements=["bank", "entry_id"], set_=values))
        await conn.execute(entry_state_changes.insert().values(bank=bank, entry_id=entry_id, via=via, **values))

    async def clear(self, bank: str, entry_id: str, *, actor: str, via: str | None, reason: str | None = None) -> bool:
        """Back to normal matching; False (and nothing logged) if the entry had no state."""
        async with write_transaction(self.engine, "entry state write") as conn:
            stmt = entry_states.delete().where(entry_states.c.bank == bank, entry_states.c.entry_id == entry_id)
            removed = (await conn.execute(stmt)).rowcount == 1
            hits = entry_hits.delete().where(entry_hits.c.bank == bank, entry_hits.c.entry_id == entry_id)
            await conn.execute(hits)  # a fresh count: the flood that switched it is not held against it again
            if removed:
                change = {"mode": "clear", "reason": reason, "actor": actor, "via": via, "created_at": syntax.now()}
                await conn.execute(entry_state_changes.insert().values(bank=bank, entry_id=entry_id, **change))
        return removed

    async def changes(self, *, before: int | None = None, limit: int = 100) -> list[EntryStateChange]:
        """The entry-state audit log, newest first, ids below `before`."""
        query = sa.select(entry_state_changes)
        if before is not None:
            query = query.where(entry_state_changes.c.id < before)
        query = query.order_by(entry_state_changes.c.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [
                EntryStateChange(r.id, r.bank, r.entry_id, r.mode, r.reason, r.actor, r.via, r.created_at)
                for r in await conn.execute(query)
            ]

    async def states(self) -> list[EntryState]:
        query = sa.select(entry_states).order_by(entry_states.c.bank, entry_states.c.entry_id)
        async with self.engine.connect() as conn:
            return [
                EntryState(r.bank, r.entry_id, r.mode, r.reason, r.actor, r.created_at)
                for r in await conn.execute(query)
            ]
