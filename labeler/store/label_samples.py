"""Where `labeler doctor` looks in the labels table: every `src` we serve, sample windows across each one's whole
seq range, and the values that are still in force.

Consumers verify every label they receive against the DID document of that label's own `src`, old labels as well
as new ones, and after a DID change the table serves labels under more than one `src`. A check that reads only the
first page of the current DID's labels misses exactly the failures that matter (issue 14 item 5), so doctor reads
an oldest, a random and a newest window of each `src`. Every query here is an index seek on `labels_src_seq`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from labeler.protocol.syntax import parse_datetime
from labeler.store.schema import labels

#: How many of our newest labels `shown_label` looks through for one in force on an account or a post.
_SHOWN_CANDIDATES: Final = 100


@dataclass(frozen=True)
class SourceSample:
    """One `src` we serve and the queryLabels cursors of its sample windows (each window is the `window` labels
    after its cursor): its oldest, one at random and its newest. Fewer cursors when the windows would overlap."""

    src: str
    cursors: tuple[int, ...]


async def sample_sources(engine: AsyncEngine, window: int, rng: random.Random | None = None) -> list[SourceSample]:
    """Every distinct `src` in the table with its sample cursors, in `src` order."""
    rng = rng or random.Random()
    samples: list[SourceSample] = []
    async with engine.connect() as conn:
        src: str | None = await _next_src(conn, None)
        while src is not None:
            samples.append(await _sample(conn, src, window, rng))
            src = await _next_src(conn, src)
    return samples


async def _next_src(conn: AsyncConnection, after: str | None) -> str | None:
    """A loose index scan: one seek per distinct `src` instead of reading every row for DISTINCT."""
    query = sa.select(sa.func.min(labels.c.src))
    if after is not None:
        query = query.where(labels.c.src > after)
    return (await conn.execute(query)).scalar_one_or_none()


async def _sample(conn: AsyncConnection, src: str, window: int, rng: random.Random) -> SourceSample:
    first, last = (await conn.execute(sa.select(sa.func.min(labels.c.seq), sa.func.max(labels.c.seq)).where(
        labels.c.src == src
    ))).one()  # fmt: skip
    newest = await _nth_newest_seq(conn, window, src)
    cursors = {first - 1, rng.randint(first, last) - 1, (newest if newest is not None else first) - 1}
    return SourceSample(src, tuple(sorted(cursors)))


async def stream_cursor(engine: AsyncEngine, window: int) -> int:
    """A subscribeLabels cursor that replays the newest `window` labels of the table (0 when it holds fewer)."""
    async with engine.connect() as conn:
        seq = await _nth_newest_seq(conn, window, None)
    return 0 if seq is None else seq - 1


async def _nth_newest_seq(conn: AsyncConnection, n: int, src: str | None) -> int | None:
    query = sa.select(labels.c.seq).order_by(labels.c.seq.desc()).offset(n - 1).limit(1)
    if src is not None:
        query = query.where(labels.c.src == src)
    return (await conn.execute(query)).scalar_one_or_none()


async def active_values(engine: AsyncEngine, src: str, now: datetime) -> list[str]:
    """The values `src` has in force: on a label that is neither negated nor expired. A value whose labels were all
    negated or have expired is no longer shown anywhere, so nothing needs to declare it any more."""
    query = (
        sa.select(labels.c.val, labels.c.exp)
        .where(labels.c.src == src, sa.not_(labels.c.neg))
        .group_by(labels.c.val, labels.c.exp)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return sorted({val for val, exp in rows if exp is None or _later(exp, now)})


def _later(exp: str, now: datetime) -> bool:
    try:
        return parse_datetime(exp) > now
    except ValueError:
        return True  # an unreadable expiry: consumers cannot tell either, so it counts as in force


async def shown_label(engine: AsyncEngine, src: str, now: datetime) -> tuple[str, str] | None:
    """Our newest label in force on an account or a post, as (uri, val): a subject an AppView answers about."""
    query = (
        sa.select(labels.c.uri, labels.c.val, labels.c.exp)
        .where(
            labels.c.src == src,
            sa.not_(labels.c.neg),
            sa.or_(labels.c.uri.startswith("did:"), labels.c.uri.like("at://%/app.bsky.feed.post/%")),
        )
        .order_by(labels.c.seq.desc())
        .limit(_SHOWN_CANDIDATES)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return next(((uri, val) for uri, val, exp in rows if exp is None or _later(exp, now)), None)
