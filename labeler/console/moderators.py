"""The console's moderators: names the operator created (`labeler moderators add`), each with a scrypt hash.

A name is what the audit log shows for everything its holder does (as `moderator:<name>`); `admin` is the
operator's own sign-in (the admin password) and cannot be taken.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from labeler.console.passwords import hash_secret
from labeler.protocol import syntax
from labeler.store.console_schema import console_moderators, console_preferences

NAME: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
RESERVED: Final = frozenset({"admin", "cli"})
MIN_SECRET: Final = 12
MAX_SECRET: Final = 1024


class ModeratorError(Exception):
    """A moderator cannot be added or removed; the message says why."""


@dataclass(frozen=True)
class Moderator:
    name: str
    created_at: str
    created_by: str


def check_name(name: str) -> str:
    if not NAME.fullmatch(name) or name in RESERVED:
        raise ModeratorError(
            "a moderator name is 1-63 of a-z 0-9 . _ - starting with a letter or digit, and not admin or cli"
        )
    return name


def check_secret(secret: str) -> str:
    if not MIN_SECRET <= len(secret) <= MAX_SECRET:
        raise ModeratorError(f"a credential is {MIN_SECRET} to {MAX_SECRET} characters")
    return secret


class ModeratorStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(self, name: str, secret: str, *, actor: str) -> Moderator:
        row = {
            "name": check_name(name),
            "password_hash": hash_secret(check_secret(secret)),
            "created_at": syntax.now(),
            "created_by": actor,
        }
        try:
            async with self.engine.begin() as conn:
                await conn.execute(console_moderators.insert().values(row))
        except IntegrityError:
            raise ModeratorError(
                f"moderator {name} exists already (remove it first to change its credential)"
            ) from None
        return Moderator(name, row["created_at"], actor)

    async def list(self) -> list[Moderator]:
        query = sa.select(console_moderators).order_by(console_moderators.c.name)
        async with self.engine.connect() as conn:
            return [Moderator(r.name, r.created_at, r.created_by) for r in await conn.execute(query)]

    async def remove(self, name: str) -> None:
        async with self.engine.begin() as conn:
            gone = (await conn.execute(console_moderators.delete().where(console_moderators.c.name == name))).rowcount
            # A new moderator of the same name starts from the defaults.
            await conn.execute(console_preferences.delete().where(console_preferences.c.user_name == name))
        if not gone:
            raise ModeratorError(f"no moderator {name}")

    async def credential_hash(self, name: str) -> str | None:
        """The stored hash, or None for a name that is not (or no longer) a moderator."""
        query = sa.select(console_moderators.c.password_hash).where(console_moderators.c.name == name)
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).scalar_one_or_none()
