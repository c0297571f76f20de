"""`takedown`: take the subject down on a PDS we administer; reversing lifts it.

`com.atproto.admin.updateSubjectStatus` with HTTP Basic `admin:<admin password>` and
`{"subject": <strongRef | #repoBlobRef | #repoRef>, "takedown": {"applied": true, "ref": …}}`; lifting is the
same call with `applied: false`. The PDS then stops serving the record (`getRecord` answers `RecordNotFound`),
the blob (`getBlob` answers `Blob not found`) or the account. The call is idempotent, so an attempt repeated
after a crash or a timeout changes nothing more.

Only repos hosted on our PDS are taken down: the subject's DID is resolved and its `#atproto_pds` endpoint
must be one of `hosts`; anything else ends `skipped` / `not-hosted-here` (a `report` is how to reach the
others). A refused password is a permanent failure that names what to fix; the password itself is never part
of a message.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from labeler.identity.resolver import DidNotFound, DidResolver, ResolutionError
from labeler.pipeline.actions.config import TakedownConfig
from labeler.pipeline.actions.model import Action, Outcome, done, skipped, unavailable
from labeler.pipeline.actions.xrpc_call import XrpcFailure, outcome_of, xrpc
from labeler.pipeline.policy import account_of

UPDATE_SUBJECT_STATUS = "com.atproto.admin.updateSubjectStatus"
_FIX = "check [actions.takedown] pds_url and admin_password_file, then `labeler actions retry`"


class TakedownKind:
    name: ClassVar[str] = "takedown"
    local: ClassVar[bool] = False

    def __init__(self, config: TakedownConfig, resolver: DidResolver, *, max_attempts: int) -> None:
        self.config = config
        self.resolver = resolver
        self.max_attempts = max_attempts
        self._auth = httpx.BasicAuth("admin", config.admin_password)
        self._client = httpx.AsyncClient(timeout=config.timeout, trust_env=False, follow_redirects=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def apply(self, action: Action) -> Outcome:
        return await self._set(action.params["subject"], {"applied": True, "ref": f"labeler-action-{action.id}"})

    async def reverse(self, action: Action, original: Action) -> Outcome:
        if original.outcome == "not-hosted-here":
            return skipped("nothing-to-reverse", "the original was not ours to take down")
        if original.state == "failed" and (original.outcome or "").startswith("http-4"):
            return skipped("nothing-to-reverse", "the PDS refused the takedown, so there is none to lift")
        # Anything else may have taken effect (a timeout is no proof of failure): lifting is idempotent.
        return await self._set(original.params["subject"], {"applied": False})

    async def _set(self, subject: dict[str, Any], takedown: dict[str, Any]) -> Outcome:
        did = str(subject["did"]) if "did" in subject else account_of(str(subject["uri"]))
        try:
            pds = await self.resolver.pds_endpoint(did)
        except DidNotFound:
            return skipped("no-such-account", f"{did} does not resolve")
        except ResolutionError as exc:
            return unavailable("did-unresolved", str(exc))
        if (pds or "").rstrip("/") not in self.config.hosts:
            return skipped("not-hosted-here", f"{did} is hosted on {pds}, not on a PDS we administer")
        body = {"subject": subject, "takedown": takedown}
        try:
            await xrpc(self._client, "POST", self.config.pds_url, UPDATE_SUBJECT_STATUS, body=body, auth=self._auth)
        except XrpcFailure as failure:
            return outcome_of(failure, _FIX)
        lifted = not takedown["applied"]
        return done("lifted" if lifted else "applied", f"{_describe(subject)} {'lifted' if lifted else 'taken down'}")


def _describe(subject: dict[str, Any]) -> str:
    if "uri" in subject:
        return f"record {subject['uri']}"
    if "cid" in subject:
        return f"blob {subject['cid']} of {subject['did']}"
    return f"account {subject['did']}"
