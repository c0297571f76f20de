"""Who is calling an admin endpoint. HTTP Basic `admin:<LABELER_ADMIN_PASSWORD>` is the operator's credential.

Without a configured password the admin API is closed, never open.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from starlette.requests import Request

from labeler.protocol.errors import AuthRequired
from labeler.service import Labeler

ADMIN_USER = "admin"


def authenticate_admin(request: Request) -> str:
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
    try:
        user, _, given = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise AuthRequired("malformed Basic credentials") from None
    user_ok = hmac.compare_digest(user.encode(), ADMIN_USER.encode())
    password_ok = hmac.compare_digest(given.encode(), password.encode())
    if not (user_ok and password_ok):
        raise AuthRequired("invalid credentials")
    return ADMIN_USER
