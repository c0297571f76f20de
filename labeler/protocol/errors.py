"""XRPC errors, named as they go on the wire (SPEC-XRPC; protocol.md §2–4).

    XrpcError                 base: carries the HTTP status, the wire name and a message
    ├── InvalidRequest        400  bad parameters or body
    ├── AuthRequired          401  no or unusable credentials
    │   ├── BadJwt            401  malformed token or forbidden token type
    │   ├── JwtExpired        401
    │   ├── BadJwtAudience    401
    │   ├── BadJwtLexiconMethod 401
    │   ├── BadJwtIss         401
    │   └── BadJwtSignature   401
    ├── Forbidden             403
    ├── NotFound              404
    ├── MethodNotSupported    405
    ├── PayloadTooLarge       413
    ├── RetryLater                 carries `retry_after`, sent as `Retry-After` when known
    │   ├── RateLimitExceeded 429
    │   └── ServiceUnavailable 503 busy or a dependency down: not a failure, come back later
    ├── InternalServerError   500  never carries internal details
    ├── MethodNotImplemented  501
    └── stream errors (sent as error frames on subscribeLabels, then the socket closes with 1008):
        FutureCursor, ConsumerTooSlow

The body is always `{"error": name, "message": text}`.
"""

from __future__ import annotations

from typing import Any, ClassVar


class XrpcError(Exception):
    """An error that a client sees as `{"error", "message"}` with `status`."""

    status: ClassVar[int] = 500
    name: ClassVar[str] = "InternalServerError"

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.name}
        if self.message:
            body["message"] = self.message
        return body

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, message={self.message!r})"


class InvalidRequest(XrpcError):
    """The request's parameters or body are not valid for the method."""

    status = 400
    name = "InvalidRequest"


class AuthRequired(XrpcError):
    """The method needs credentials and none (or none usable) were given."""

    status = 401
    name = "AuthRequired"


class BadJwt(AuthRequired):
    """The bearer token is malformed or of a kind this method does not accept."""

    name = "BadJwt"


class JwtExpired(AuthRequired):
    """The token's `exp` has passed."""

    name = "JwtExpired"


class BadJwtAudience(AuthRequired):
    """The token's `aud` is not this service."""

    name = "BadJwtAudience"


class BadJwtLexiconMethod(AuthRequired):
    """The token's `lxm` is missing or names another method."""

    name = "BadJwtLexiconMethod"


class BadJwtIss(AuthRequired):
    """The token's `iss` is not a resolvable DID."""

    name = "BadJwtIss"


class BadJwtSignature(AuthRequired):
    """The token's signature does not verify against the issuer's key."""

    name = "BadJwtSignature"


class Forbidden(XrpcError):
    """Authenticated, but not allowed to do this."""

    status = 403
    name = "Forbidden"


class NotFound(XrpcError):
    """No such method or object."""

    status = 404
    name = "NotFound"


class MethodNotSupported(XrpcError):
    """The HTTP method is wrong for this XRPC method."""

    status = 405
    name = "MethodNotSupported"


class PayloadTooLarge(XrpcError):
    """The request body exceeds the configured limit."""

    status = 413
    name = "PayloadTooLarge"


class RetryLater(XrpcError):
    """Not now, maybe later; `retry_after`: whole seconds to wait, sent as `Retry-After` when known."""

    def __init__(self, message: str = "", *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitExceeded(RetryLater):
    """Too many requests (or connections) from this client."""

    status = 429
    name = "RateLimitExceeded"


class ServiceUnavailable(RetryLater):
    """We cannot take this now: a cap on work or connections is reached, or something we depend on is down."""

    status = 503
    name = "ServiceUnavailable"


class InternalServerError(XrpcError):
    """Something failed on our side; details are logged, never sent."""

    status = 500
    name = "InternalServerError"


class MethodNotImplemented(XrpcError):
    """An XRPC method this service does not implement."""

    status = 501
    name = "MethodNotImplemented"


class FutureCursor(XrpcError):
    """subscribeLabels: the requested cursor is ahead of the stream's head."""

    status = 400
    name = "FutureCursor"


class ConsumerTooSlow(XrpcError):
    """subscribeLabels: the subscriber fell further behind than its buffer allows."""

    status = 400
    name = "ConsumerTooSlow"
