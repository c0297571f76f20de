"""Each console user's own settings, kept in the database by their session name (`admin` or a moderator's name;
removing a moderator removes theirs), and the page that changes them.

One for now: how the review queue hides an image until it is revealed. Every choice still hides it (there is no
"unblurred"); a reviewer may only relax the default, blurred and grey, to blurred in colour or lightly blurred
and grey. Revealing stays one image at a time, by a click or a key, whatever is chosen.
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response

from labeler.console.auth import actor, console_auth
from labeler.console.web import ConsoleError, Redirect, page, render
from labeler.protocol import syntax
from labeler.store.console_schema import console_preferences
from labeler.store.engine import is_sqlite

#: The choices, as the queue's image class (console.css) → what the settings page calls them.
WELLNESS: Final = {
    "blur-grey": "blurred and grey (the default)",
    "blur-colour": "blurred, in colour",
    "light-blur": "lightly blurred and grey",
}
DEFAULT: Final = "blur-grey"
SETTINGS_PATH: Final = "/console/settings"


class PreferenceStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._insert = sqlite.insert if is_sqlite(engine) else postgresql.insert

    async def wellness(self, user: str) -> str:
        """`user`'s choice, or DEFAULT (never set, or a value this version does not know)."""
        query = sa.select(console_preferences.c.wellness).where(console_preferences.c.user_name == user)
        async with self.engine.connect() as conn:
            found = (await conn.execute(query)).scalar_one_or_none()
        return found if found in WELLNESS else DEFAULT

    async def set_wellness(self, user: str, choice: str) -> None:
        """Keep `choice` (one of WELLNESS: ValueError otherwise) for `user`."""
        if choice not in WELLNESS:
            raise ValueError(f"choose one of {', '.join(WELLNESS)}")
        row = {"user_name": user, "wellness": choice, "updated_at": syntax.now()}
        stmt = self._insert(console_preferences).values(row)
        stmt = stmt.on_conflict_do_update(
            index_elements=["user_name"], set_={"wellness": choice, "updated_at": row["updated_at"]}
        )
        async with self.engine.begin() as conn:
            await conn.execute(stmt)


def preferences(request: Request) -> PreferenceStore:
    return PreferenceStore(request.app.state.labeler.engine)


@page
async def settings_page(request: Request) -> Response:
    """The signed-in user's settings (GET), or saving them (POST, with the CSRF token)."""
    auth = console_auth(request)
    store = preferences(request)
    if request.method == "POST":
        session, form = await auth.posted(request)
        try:
            await store.set_wellness(session.user, form.get("wellness", ""))
        except ValueError as exc:
            raise ConsoleError(400, str(exc)) from None
        raise Redirect(f"{SETTINGS_PATH}?saved=1")
    session = await auth.require(request)
    context = {
        "session": session,
        "actor": actor(session),
        "choices": WELLNESS,
        "wellness": await store.wellness(session.user),
        "saved": request.query_params.get("saved") == "1",
    }
    return render(request, "settings.html", context)
