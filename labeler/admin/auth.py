"""Who is calling an admin endpoint. HTTP Basic `admin:<LABELER_ADMIN_PASSWORD>` is the operator's credential;
moderators (`LABELER_MODERATORS`) use service auth instead: a JWT from their PDS with `aud` our DID and `lxm`
the method's NSID (`com.atproto.server.getServiceAuth`), so they never hold the operator's password.

Without a configured password the admin API is closed to Basic credentials, never open. Wrong passwords are
limited per client (`labeler.xrpc.failed_logins`): past the allowance every attempt is 429 with `Retry-After`.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from starlette.requests import Request

from labeler.protocol.errors import AuthRequired, Forbidden
from labeler.service import Labeler
from labeler.xrpc.failed_logins import FailureLimiter
from labeler.xrpc.service_auth import verify_service_auth

ADMIN_USER = "admin"


async def authenticate_admin(request: Request) -> str:
    """Return the actor name for the audit log, or raise AuthRequired."""
    labeler: Labeler = request.app.state.labeler
    password = labeler.settings.admin_password
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if not header:
        raise AuthRequired("authentication required")
    if scheme.lower() != "basic":
        raise AuthRequired("use HTTP Basic credentials admin:<password>")
    if not password:
        raise AuthRequired("the admin API is disabled: set LABELER_ADMIN_PASSWORD")
    failed_logins: FailureLimiter = request.app.state.failed_logins
    attempt = await failed_logins.check_client(request)  # before comparing: out of attempts, right or wrong is refused
    try:
        user, _, given = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        await attempt.failed()
        raise AuthRequired("malformed Basic credentials") from None
    user_ok = hmac.compare_digest(user.encode(), ADMIN_USER.encode())
    password_ok = hmac.compare_digest(given.encode(), password.encode())
    if not (user_ok and password_ok):
        await attempt.failed()
        raise AuthRequired("invalid credentials")
    await attempt.succeeded()
    return ADMIN_USER


async def authenticate_moderator(request: Request, lxm: str) -> str:
    """The actor for the audit log: "admin" (Basic) or the moderator's DID (Bearer service token for `lxm`).

    A valid token from a DID that is not a configured moderator is 403; a bad token is 401 as for createReport.
    """
    header = request.headers.get("authorization", "")
    if header.strip().partition(" ")[0].lower() != "bearer":
        return await authenticate_admin(request)
    labeler: Labeler = request.app.state.labeler
    auth = await verify_service_auth(labeler, header, lxm)
    if auth.iss not in labeler.settings.moderator_dids:
        raise Forbidden(f"{auth.iss} is not a moderator of this labeler")
    return auth.iss
