"""Put our label key and labeler service in an account's did:plc through its PDS (protocol.md §5.3).

requestPlcOperationSignature (the PDS emails a token) → signPlcOperation → submitPlcOperation. signPlcOperation
replaces each top-level field wholesale, so we always send the complete state: the directory's current data,
plus anything the PDS recommends that it lacks, plus our two entries. Nothing else changes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from labeler.identity.pds_client import PdsAccount, PdsError, pds_session, pds_step
from labeler.identity.plc import LABEL_METHOD, LABELER_SERVICE, PlcState
from labeler.identity.plc_directory import PlcDirectory

#: Called after the PDS has emailed the token; returns what the operator types (or a test reads from the mail).
AskToken = Callable[[], Awaitable[str]]
#: Runs just before the signed operation is submitted (a key rotation holds signing there).
BeforeSubmit = Callable[[], Awaitable[None]]


def _plain(value: Any) -> Any:
    return value.to_dict() if hasattr(value, "to_dict") else value


async def link_via_pds(
    account: PdsAccount,
    directory: PlcDirectory,
    *,
    label_did_key: str,
    endpoint: str,
    token: str | None = None,
    ask_token: AskToken | None = None,
    expect_did: str | None = None,
    before_submit: BeforeSubmit | None = None,
) -> str:
    """Add or replace `atproto_label` and `atproto_labeler` on the account's DID; returns the DID.

    With `token` the emailed token is already known; otherwise a new one is requested and `ask_token` supplies it.
    `expect_did` guards against logging in to another account than the labeler's.
    """
    from atproto import models  # imported when used, not with the CLI (labeler.cli)

    async with pds_session(account) as session:
        did, identity = session.did, session.client.com.atproto.identity
        if expect_did is not None and did != expect_did:
            raise PdsError(f"{account.identifier} is {did}, not the labeler's DID {expect_did}")
        if not did.startswith("did:plc:"):
            raise PdsError(f"{did} is not a did:plc; only a did:plc is changed through the PDS")
        current = await directory.data(did)
        async with pds_step("getRecommendedDidCredentials"):
            recommended = await identity.get_recommended_did_credentials()
        wanted = current.merged_with(
            PlcState(
                rotation_keys=tuple(recommended.rotation_keys or ()),
                verification_methods=_plain(recommended.verification_methods) or {},
                also_known_as=tuple(recommended.also_known_as or ()),
                services=_plain(recommended.services) or {},
            )
        ).with_labeler(label_did_key, endpoint)
        if token is None:
            if ask_token is None:
                raise PdsError("no PLC operation token: pass one, or a way to ask for it")
            async with pds_step("requestPlcOperationSignature"):
                await identity.request_plc_operation_signature()
            token = (await ask_token()).strip()
        async with pds_step("signPlcOperation"):
            signed = await identity.sign_plc_operation(
                models.ComAtprotoIdentitySignPlcOperation.Data(
                    token=token,
                    rotation_keys=list(wanted.rotation_keys),
                    verification_methods=dict(wanted.verification_methods),
                    also_known_as=list(wanted.also_known_as),
                    services={name: dict(s) for name, s in wanted.services.items()},
                )
            )
        operation = _plain(signed.operation)
        _check_signed(operation, wanted)
        if before_submit is not None:
            await before_submit()
        async with pds_step("submitPlcOperation"):
            await identity.submit_plc_operation(models.ComAtprotoIdentitySubmitPlcOperation.Data(operation=operation))
    return did


def _check_signed(operation: Any, wanted: PlcState) -> None:
    """Refuse to submit an operation the PDS changed from what we asked for (our entries above all)."""
    try:
        got = PlcState.from_json(operation)
    except Exception as exc:
        raise PdsError(f"signPlcOperation returned something that is not a PLC operation: {exc}") from None
    if (
        got.verification_methods.get(LABEL_METHOD) != wanted.verification_methods[LABEL_METHOD]
        or got.services.get(LABELER_SERVICE) != wanted.services[LABELER_SERVICE]
    ):
        raise PdsError("the PDS signed an operation without our label key and service; nothing was submitted")
