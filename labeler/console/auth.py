"""Who is using the console: sign-in (admin password or a moderator's credential), the session cookie, CSRF.

- Sign-in is rate limited per client (5 failures in 5 minutes) and per name (20 in 15 minutes), counted in the
  database by the service's one `FailureLimiter` (every serving process sees the same counts), and an unknown
  name costs the same scrypt check as a wrong credential. A client is what the admin API limits too
  (`labeler.xrpc.clients.client_key`): an IPv4 address or an IPv6 /64, so rotating addresses within the /64 an
  IPv6 line is given buys no more guesses.
- The cookie is HttpOnly, SameSite=Strict, Path=/console, Secure when the console is reached over HTTPS (the
  request's scheme, which `serve` takes from a trusted proxy's X-Forwarded-Proto, or an https public URL), and
  expires with the session.
- Every POST carries the session's CSRF token as the form field `csrf`; the sign-in form too (its token lives in
  a session with no user).
- Signing out puts the session on a signed-out list in the database (`labeler.store.token_uses`), so its cookie
  is refused everywhere even if it was copied; the list keeps each entry until the session would have expired.
- The audit name of a session is `admin` (the operator's password) or `moderator:<name>`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from labeler.console.moderators import ModeratorStore
from labeler.console.passwords import DECOY_HASH, verify_secret_async
from labeler.console.sessions import LIFETIME, Session, SessionCodec, load_secret
from labeler.console.web import ConsoleError, Redirect, read_form
from labeler.service import Labeler
from labeler.xrpc.clients import client_key
from labeler.xrpc.failed_logins import Allowance, FailureLimiter

COOKIE: Final = "labeler_console"
VIA: Final = "console"  # what the audit log says a decision was made through (review_items.decided_via)
ADMIN: Final = "admin"
MODERATOR_PREFIX: Final = "moderator:"
LOGIN_PATH: Final = "/console/login"
SIGNED_OUT: Final = "console-signout"
_MAX_CREDENTIAL: Final = 1024
BY_CLIENT: Final = Allowance("console-client", limit=5, window=300)
BY_NAME: Final = Allowance("console-name", limit=20, window=900)

log = logging.getLogger(__name__)


def _session_id(session: Session) -> str:
    """A session's name in the signed-out list: a hash of its CSRF token (random per session, never stored)."""
    return "sha256:" + hashlib.sha256(session.csrf.encode()).hexdigest()


def actor(session: Session) -> str:
    """The name the audit log keeps for what this session does."""
    return ADMIN if session.user == ADMIN else MODERATOR_PREFIX + session.user


def console_auth(request: Request) -> ConsoleAuth:
    auth: ConsoleAuth = request.app.state.console_auth
    return auth


class ConsoleAuth:
    def __init__(self, labeler: Labeler, failed_logins: FailureLimiter) -> None:
        self.settings = labeler.settings
        self.signed_out = labeler.replay  # signed-out sessions, until they expire (labeler.store.token_uses)
        self.moderators = ModeratorStore(labeler.engine)
        self.failed_logins = failed_logins
        self._codec: SessionCodec | None = None

    @property
    def codec(self) -> SessionCodec:
        if self._codec is None:  # the keys directory exists once the labeler has started
            self._codec = SessionCodec(load_secret(self.settings.keys_dir))
        return self._codec

    async def _tag_for(self, user: str) -> str | None:
        """The credential tag a session of `user` must carry now; None if `user` cannot sign in."""
        if user == ADMIN:
            password = self.settings.admin_password
            return self._admin_tag(password) if password else None
        stored = await self.moderators.credential_hash(user)
        return self._moderator_tag(stored) if stored else None

    def _admin_tag(self, password: str) -> str:
        """What an admin session carries: it stops verifying when the admin password changes."""
        return self.codec.tag("admin\x00" + password)

    def _moderator_tag(self, stored_hash: str) -> str:
        """What a moderator's session carries: it stops verifying when their credential changes or is removed."""
        return self.codec.tag("moderator\x00" + stored_hash)

    async def session(self, request: Request) -> Session | None:
        """The request's signed-in session, or None (no cookie, forged, expired, or its credential changed)."""
        found = self.codec.decode(request.cookies.get(COOKIE, ""))
        if found is None or not found.user:
            return None
        expected = await self._tag_for(found.user)
        if expected is None or not hmac.compare_digest(found.tag, expected):
            return None
        return None if await self.signed_out.used(SIGNED_OUT, _session_id(found), time.time()) else found

    async def sign_out(self, session: Session) -> None:
        """Refuse this session's cookie from now on, in every process sharing the database, until it expires."""
        now = time.time()
        await self.signed_out.first_use(SIGNED_OUT, _session_id(session), float(session.expires), now)

    async def require(self, request: Request) -> Session:
        """The signed-in session; a page request without one is sent to the sign-in page, anything else refused."""
        found = await self.session(request)
        if found is not None:
            return found
        if request.method == "GET":
            raise Redirect(LOGIN_PATH)
        raise ConsoleError(403, "sign in first")

    async def posted(self, request: Request) -> tuple[Session, dict[str, str]]:
        """The signed-in session and the form of a POST whose CSRF token matches it (else ConsoleError)."""
        session = await self.require(request)
        form = await read_form(request)
        self.check_csrf(request, session, form)
        return session, form

    def anonymous(self, request: Request) -> Session:
        """The pre-sign-in session carrying the sign-in form's CSRF token (kept if the cookie has a valid one)."""
        found = self.codec.decode(request.cookies.get(COOKIE, ""))
        return found if found is not None and not found.user else self.codec.new("", "")

    def check_csrf(self, request: Request, session: Session, form: dict[str, str]) -> None:
        given = form.get("csrf", "")
        if not (given and hmac.compare_digest(given.encode(), session.csrf.encode())):
            raise ConsoleError(403, "the form's CSRF token is missing or wrong: reload the page and try again")
        origin = request.headers.get("origin")
        if origin is not None and origin not in ("null", f"{request.url.scheme}://{request.url.netloc}"):
            raise ConsoleError(403, "the form was sent from another site")

    async def sign_in(self, request: Request, user: str, credential: str) -> Session:
        """A new signed-in session, or ConsoleError (401 wrong, 429 too many failures)."""
        client = client_key(request)
        name = user[:64]
        attempt = await self.failed_logins.check([(BY_CLIENT, client), (BY_NAME, name)])
        if attempt.wait > 0:
            raise ConsoleError(
                429, "too many failed sign-ins: wait and try again", headers={"Retry-After": str(attempt.retry_after)}
            )
        tag = await self._check(user, credential[:_MAX_CREDENTIAL])
        if tag is None:
            await attempt.failed()
            log.warning("console sign-in refused for %r from %s", name, client)
            raise ConsoleError(401, "wrong name or credential")
        await attempt.succeeded()
        log.info("console sign-in: %s from %s", user, client)
        return self.codec.new(user, tag)

    async def _check(self, user: str, credential: str) -> str | None:
        if user == ADMIN:
            password = self.settings.admin_password
            ok = bool(password) and hmac.compare_digest(credential.encode(), password.encode())
            return self._admin_tag(password) if ok else None
        stored = await self.moderators.credential_hash(user) if len(user) <= 64 else None
        if not await verify_secret_async(credential, stored or DECOY_HASH) or stored is None:
            return None
        return self._moderator_tag(stored)

    def set_cookie(self, request: Request, response: Response, session: Session) -> None:
        response.set_cookie(
            COOKIE,
            self.codec.encode(session),
            max_age=LIFETIME,
            path="/console",
            secure=request.url.scheme == "https" or self.settings.public_url.startswith("https:"),
            httponly=True,
            samesite="strict",
        )

    def clear_cookie(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")
