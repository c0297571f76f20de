"""Service-auth for incoming XRPC calls: a bearer JWT verified for our DID and the method's NSID.

Wires `labeler.protocol.service_auth` to the process-wide resolver and the used-token table on the Labeler. Both
audience forms are accepted: the bare DID (what PDSes send today) and `did#atproto_labeler` (protocol.md §4.2).

Identity failures are the caller's 401, never our 5xx: an issuer whose DID does not exist has no key
(`BadJwtIss`, from `service_auth_key`); an issuer we cannot resolve right now (PLC down, did:web host down, a
broken document) is also `BadJwtIss`, with a message that says so and to retry, and a warning in our log. An
issuer we will not resolve at all (an unsupported DID method, a did:web on a host that is not public) is
`BadJwtIss` without a warning: anyone can send one. It is never reported as `BadJwtSignature`: we did not check
any signature.
"""

from __future__ import annotations

import logging
from typing import Final

from labeler.identity import DidRefused, IdentityError
from labeler.protocol.errors import BadJwtIss
from labeler.protocol.service_auth import ServiceAuth, bearer_token, verify_service_jwt
from labeler.service import Labeler

LABELER_SERVICE_FRAGMENT: Final = "#atproto_labeler"

log = logging.getLogger(__name__)


def audiences(did: str) -> frozenset[str]:
    return frozenset({did, did + LABELER_SERVICE_FRAGMENT})


async def verify_service_auth(labeler: Labeler, authorization: str | None, lxm: str) -> ServiceAuth:
    """The verified claims of the request's bearer token for method `lxm`; raises the 401 `AuthRequired` family."""
    token = bearer_token(authorization)
    try:
        return await verify_service_jwt(
            token,
            audiences=audiences(labeler.settings.did),
            lxm=lxm,
            get_key=labeler.resolver.service_auth_key,
            max_lifetime=labeler.settings.max_token_lifetime,
            replay=labeler.replay,
        )
    except DidRefused as exc:  # the caller's choice of DID, not our outage: no warning for anyone to provoke
        log.info("service auth: refused the token issuer: %s", exc)
        raise BadJwtIss(f"jwt iss cannot be used here ({exc})") from None
    except IdentityError as exc:
        log.warning("service auth: cannot resolve the token issuer: %s", exc)
        raise BadJwtIss(f"could not resolve the jwt issuer's DID document ({exc}); retry later") from None
