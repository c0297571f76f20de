"""`report`: report the subject to an upstream moderation service with `com.atproto.moderation.createReport`.

We report as our account, the way a user's PDS reports for them, in one of two ways (`[actions.report] via`):

- `service-auth` (default): our PDS issues a service token (`com.atproto.server.getServiceAuth` with `aud` the
  service's DID and `lxm` createReport), and the report goes straight to the service's `#atproto_labeler`
  endpoint from its DID document;
- `proxy`: the report goes to our PDS with `atproto-proxy: <service DID>#atproto_labeler`, and the PDS mints the
  token and forwards it, as it does for every app.

Either way the service sees our account's DID as the reporter. The session on our PDS is made once
(`createSession`) and again only when the PDS stops accepting it. A report cannot be withdrawn: its reversal
ends `skipped` / `not-reversible`, and the service has to be told another way. An attempt cut short after the
report was sent (a crash in that instant) can send it twice; everything else about it happens once.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

import httpx

from labeler.identity.resolver import DidNotFound, DidResolver, ResolutionError
from labeler.outbound import public_transport
from labeler.pipeline.actions.config import ReportConfig
from labeler.pipeline.actions.model import Action, Outcome, done, refused, skipped, unavailable
from labeler.pipeline.actions.xrpc_call import XrpcFailure, XrpcRefused, outcome_of, xrpc

CREATE_REPORT: Final = "com.atproto.moderation.createReport"
CREATE_SESSION: Final = "com.atproto.server.createSession"
GET_SERVICE_AUTH: Final = "com.atproto.server.getServiceAuth"
_STALE_SESSION: Final = frozenset({"ExpiredToken", "InvalidToken", "AuthRequired", "AuthMissing"})
_FIX = "check [actions.report] (identifier, password_file, service_did), then `labeler actions retry`"


class _Unusable(Exception):
    """The service's endpoint cannot be used; the outcome says why."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.detail)
        self.outcome = outcome


class ReportKind:
    name: ClassVar[str] = "report"
    local: ClassVar[bool] = False

    def __init__(
        self, config: ReportConfig, resolver: DidResolver, *, max_attempts: int, allow_private: bool = False
    ) -> None:
        self.config = config
        self.resolver = resolver
        self.max_attempts = max_attempts
        self._client = httpx.AsyncClient(timeout=config.timeout, trust_env=False, follow_redirects=False)
        # The service's endpoint is whatever its DID document says: public addresses only (labeler.outbound).
        self._service = httpx.AsyncClient(
            timeout=config.timeout, follow_redirects=False, transport=public_transport(allow_private=allow_private)
        )
        self._access: str | None = None
        self._login = asyncio.Lock()

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._service.aclose()

    async def apply(self, action: Action) -> Outcome:
        params = action.params
        body = {"reasonType": params["reason_type"], "subject": params["subject"], "reason": params["reason"]}
        try:
            answer = await self._send(body)
        except XrpcFailure as failure:
            return outcome_of(failure, _FIX)
        except _Unusable as unusable:
            return unusable.outcome
        service = self.config.service_did
        return done(
            "reported",
            f"report {answer.get('id')} at {service}",
            report_id=answer.get("id"),
            service=service,
            reported_by=answer.get("reportedBy"),
        )

    async def reverse(self, action: Action, original: Action) -> Outcome:
        return skipped("not-reversible", "a report sent upstream cannot be withdrawn; tell the service it was wrong")

    async def _send(self, body: dict[str, Any]) -> dict[str, Any]:
        service = self.config.service_did
        if self.config.via == "proxy":
            headers = {"atproto-proxy": f"{service}#atproto_labeler"}
            return await self._as_us("POST", CREATE_REPORT, body=body, headers=headers)
        grant = await self._as_us("GET", GET_SERVICE_AUTH, params={"aud": service, "lxm": CREATE_REPORT})
        token = grant.get("token")
        if not isinstance(token, str):
            raise _Unusable(refused("bad-answer", f"{GET_SERVICE_AUTH} answered without a token"))
        endpoint = await self._endpoint()
        return await xrpc(
            self._service, "POST", endpoint, CREATE_REPORT, body=body, headers={"authorization": f"Bearer {token}"}
        )

    async def _as_us(
        self,
        method: str,
        nsid: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A call to our PDS with our session; a session the PDS no longer accepts is made again, once."""
        for renew in (False, True):
            auth = {"authorization": f"Bearer {await self._session(renew=renew)}"}
            try:
                return await xrpc(
                    self._client,
                    method,
                    self.config.pds_url,
                    nsid,
                    body=body,
                    params=params,
                    headers={**(headers or {}), **auth},
                )
            except XrpcRefused as failure:
                if renew or failure.error not in _STALE_SESSION:
                    raise
        raise AssertionError("unreachable")

    async def _session(self, *, renew: bool) -> str:
        async with self._login:
            if self._access is None or renew:
                body = {"identifier": self.config.identifier, "password": self.config.password}
                answer = await xrpc(self._client, "POST", self.config.pds_url, CREATE_SESSION, body=body)
                access = answer.get("accessJwt")
                if not isinstance(access, str):
                    raise _Unusable(refused("bad-answer", f"{CREATE_SESSION} answered without an access token"))
                self._access = access
            return self._access

    async def _endpoint(self) -> str:
        """The service's `#atproto_labeler` endpoint from its DID document."""
        service = self.config.service_did
        try:
            endpoint = await self.resolver.labeler_endpoint(service)
        except DidNotFound:
            raise _Unusable(refused("no-service", f"{service} does not resolve")) from None
        except ResolutionError as exc:
            raise _Unusable(unavailable("did-unresolved", str(exc))) from None
        parts = urlsplit(endpoint or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _Unusable(refused("no-endpoint", f"{service} declares no #atproto_labeler endpoint"))
        return str(endpoint).rstrip("/")
