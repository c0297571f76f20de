"""Identity: resolving DIDs to documents, keys and service endpoints (protocol.md §1.3, §4.3, §5.1).

This is the only package that fetches DID documents; everything else asks a `DidResolver`.
"""

from __future__ import annotations

from labeler.identity.cache import BoundedDidCache
from labeler.identity.resolver import (
    DidNotFound,
    DidRefused,
    DidResolver,
    IdentityError,
    ResolutionError,
    parse_document,
    verification_key,
)

__all__ = [
    "BoundedDidCache",
    "DidNotFound",
    "DidRefused",
    "DidResolver",
    "IdentityError",
    "ResolutionError",
    "parse_document",
    "verification_key",
]
