"""The signing hold: no label is committed, by any process, between a key rotation publishing the new key and
activating it (SPEC-LABEL's recipe: pause signing, update the DID document, resume with the new key).

Without it, the DID document names the new key while other processes, which re-read the keyring once a second,
still sign with the old one: a consumer that re-resolves the DID per label rejects those labels. With it:

1. the rotation *holds* signing (`held_until`, a deadline in Unix seconds, so a rotation that dies cannot stop
   signing for longer), in a transaction that takes the label sequencing lock, so every commit already under way
   has finished and every later one sees the hold;
2. it publishes the new key, confirms the document names it, and activates it in the keyring;
3. it *releases* the hold and bumps `generation`.

Every label commit reads this row under the sequencing lock (the same statement that reads the head). A held
commit is refused with `SigningHeld` and the writer retries it; a commit whose labels were signed under an older
generation is refused with `SigningRotated`: the writer re-reads the keyring, re-signs the batch with the key now
active, and commits. So a label committed after the document changed is signed by the new key, whichever process
wrote it. A released hold without a bump (the rotation failed) lets signing resume with the key it had.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from labeler.store.engine import PG_LABEL_SEQUENCE_LOCK, is_sqlite, write_transaction
from labeler.store.schema import labels, signing_state

_ROW: Final = 1
#: The head and the signing state in one statement (the row may be missing: no hold, generation 0).
HEAD_AND_STATE_SQL: Final = (
    f"SELECT (SELECT coalesce(max(seq), 0) FROM {labels.name}), s.held_until, s.generation "
    f"FROM (SELECT 1 AS one) AS o LEFT JOIN {signing_state.name} AS s ON s.id = {_ROW}"
)


class SigningHeld(Exception):
    """A key rotation holds signing; commit again shortly."""


class SigningRotated(Exception):
    """The labels were signed under an older key generation: re-read the keyring, re-sign, commit again."""

    def __init__(self, generation: int) -> None:
        super().__init__(f"the signing key changed (generation {generation})")
        self.generation = generation


def check(row: Sequence[Any], expected_generation: int | None) -> int:
    """For a commit under the sequencing lock: the head from a `HEAD_AND_STATE_SQL` row, or why not to commit.
    `expected_generation` None (a caller that signs with no keyring of its own) skips the generation check."""
    head, held_until, generation = row
    if held_until is not None and held_until > time.time():
        raise SigningHeld(f"signing is held until {held_until:.3f}")
    if expected_generation is not None and (generation or 0) != expected_generation:
        raise SigningRotated(generation or 0)
    return int(head)


async def current_generation(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        value = (await conn.execute(sa.text(HEAD_AND_STATE_SQL))).one()[2]
    return int(value or 0)


class SigningHold:
    """`labeler keys rotate`'s side: `start` before the DID document changes, `end` once the key is active."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._insert = sqlite.insert if is_sqlite(engine) else postgresql.insert

    async def start(self, seconds: float) -> None:
        """Hold signing for at most `seconds`; returns once no label commit is under way (see module doc)."""
        await self._set(held_until=time.time() + seconds)

    async def end(self, *, rotated: bool) -> None:
        """Release the hold; `rotated`: the active key changed, every process re-signs what it has not committed."""
        bump = signing_state.c.generation + 1 if rotated else signing_state.c.generation
        await self._set(held_until=None, generation=bump, first_generation=1 if rotated else 0)

    async def _set(self, *, held_until: float | None, generation: Any = None, first_generation: int = 0) -> None:
        values: dict[str, Any] = {"held_until": held_until}
        if generation is not None:
            values["generation"] = generation
        insert = self._insert(signing_state).values(id=_ROW, held_until=held_until, generation=first_generation)
        statement = insert.on_conflict_do_update(index_elements=[signing_state.c.id], set_=values)
        lock = f"SELECT pg_advisory_xact_lock({PG_LABEL_SEQUENCE_LOCK})"
        async with write_transaction(self.engine, "holding signing", pg_lock=lock) as conn:
            await conn.execute(statement)
