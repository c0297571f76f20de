"""What the identity commands share: PDS account options, token prompts, a resolver, readable identity errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import click

from labeler.cli._common import run
from labeler.config import Settings
from labeler.identity.declare import DeclarationError
from labeler.identity.pds_client import PdsAccount, PdsError
from labeler.identity.pds_route import BeforeSubmit, link_via_pds
from labeler.identity.plc import PlcState
from labeler.identity.plc_directory import PlcDirectory, update_did
from labeler.identity.resolver import DidResolver, IdentityError, ResolutionError
from labeler.identity.rotation import wait_for_label_key
from labeler.keys import ROTATION_KEY_FILE, KeyInfo, Keyring, KeyringError, read_key_file
from labeler.outbound import is_ip_literal
from labeler.protocol.crypto import SigningKey

#: Seconds a command waits for a changed DID document to resolve with our key.
CONFIRM_SECONDS: Final = 10.0
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def run_identity(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """`run`, plus identity, PDS and declaration errors as clean CLI failures."""
    try:
        return run(coro_fn)
    except (IdentityError, DeclarationError) as exc:
        raise click.ClickException(str(exc)) from None


def resolver_for(settings: Settings) -> DidResolver:
    """A fresh resolver (empty cache, no refresh cooldown): identity commands want the current document."""
    return DidResolver(
        plc_url=settings.plc_url,
        allow_insecure_did_web=settings.allow_insecure_did_web,
        allow_private=settings.allow_private_fetch,
        refresh_cooldown=0,
    )


def publishable_endpoint(settings: Settings) -> str:
    """`public_url`, refused when its host is an IP address: PDSes will not proxy to one ("Invalid hostname"), so a
    DID document naming it hides every label from the app (`labeler doctor` fails it too)."""
    if not is_ip_literal(urlsplit(settings.public_url).hostname or ""):
        return settings.public_url
    raise click.ClickException(
        f"public_url {settings.public_url} is an IP address, which PDSes refuse to proxy to; serve the labeler "
        "under a host name (e.g. https://labeler.example.com) and set LABELER_PUBLIC_URL to it"
    )


def active_key(settings: Settings) -> KeyInfo:
    try:
        return Keyring.open(settings.keys_dir).active()[0]
    except KeyringError as exc:
        raise click.ClickException(str(exc)) from None


def pds_options(fn: F) -> F:
    """--pds / --identifier / --password (also LABELER_PDS_URL, LABELER_PDS_IDENTIFIER, LABELER_PDS_PASSWORD)."""
    fn = click.option(
        "--password", envvar="LABELER_PDS_PASSWORD", help="The account's password (prompted for when missing)."
    )(fn)
    fn = click.option(
        "--identifier", envvar="LABELER_PDS_IDENTIFIER", help="Handle or DID to log in as [default: the labeler DID]."
    )(fn)
    fn = click.option(
        "--pds", "pds_url", envvar="LABELER_PDS_URL", help="PDS URL [default: the DID document's #atproto_pds]."
    )(fn)
    return fn


def ask_password(password: str | None, *, full: bool) -> str:
    if password:
        return password
    hint = " (the full password: app passwords cannot change a DID)" if full else ""
    return str(click.prompt(f"Account password{hint}", hide_input=True))


async def pds_account(settings: Settings, pds_url: str | None, identifier: str | None, password: str) -> PdsAccount:
    """The account to log in as; without --pds, the PDS the labeler DID's document names."""
    return PdsAccount(
        pds_url=await pds_url_for(settings, pds_url), identifier=identifier or settings.did, password=password
    )


async def pds_url_for(settings: Settings, pds_url: str | None) -> str:
    """--pds, else the PDS the labeler DID's document names (a did:web of our own names none): resolved before
    any password is asked for, so a labeler without an account hears so first."""
    if pds_url:
        return pds_url
    try:
        async with resolver_for(settings) as resolver:
            found = await resolver.pds_endpoint(settings.did, force_refresh=True)
    except IdentityError as exc:
        raise PdsError(f"no --pds given and {settings.did} cannot be resolved: {exc}") from None
    if not found:
        raise PdsError(
            f"no --pds given and {settings.did}'s document names no PDS: the declaration lives in an account's "
            "repo, so link one first (`labeler did link-pds`) or give --pds and --identifier"
        )
    return found


async def prompt_token() -> str:
    """The PLC operation token the PDS just emailed, typed by the operator."""
    prompt = "The PDS has emailed a PLC operation token to the account's address. Token"
    return str(await asyncio.to_thread(click.prompt, prompt))


def rotation_key(settings: Settings, path: Path | None) -> SigningKey:
    """The operator's PLC rotation key: --rotation-key-file, else <keys_dir>/rotation.pem."""
    path = path or settings.keys_dir / ROTATION_KEY_FILE
    if not path.exists():
        raise click.ClickException(f"no rotation key at {path}; make one: `labeler keys generate --purpose rotation`")
    try:
        return read_key_file(path)
    except KeyringError as exc:
        raise click.ClickException(str(exc)) from None


async def publish_with_rotation_key(
    settings: Settings,
    rotation: SigningKey,
    label_did_key: str,
    *,
    handle: str | None = None,
    before_submit: BeforeSubmit | None = None,
) -> None:
    """A PLC update of our did:plc signed by the operator's rotation key: our key and endpoint (and handle)."""

    def change(state: PlcState) -> PlcState:
        state = state.with_labeler(label_did_key, publishable_endpoint(settings))
        return replace(state, also_known_as=(f"at://{handle}",)) if handle else state

    async with PlcDirectory(settings.plc_url) as directory:
        await update_did(directory, settings.did, rotation, change, before_submit=before_submit)


async def publish_via_pds(
    settings: Settings,
    account: PdsAccount,
    label_did_key: str,
    *,
    token: str | None,
    expect_did: str | None,
    before_submit: BeforeSubmit | None = None,
) -> str:
    """Our key and endpoint added to the account's did:plc through its PDS; returns the DID."""
    async with PlcDirectory(settings.plc_url) as directory:
        return await link_via_pds(
            account,
            directory,
            label_did_key=label_did_key,
            endpoint=publishable_endpoint(settings),
            token=token,
            ask_token=prompt_token,
            expect_did=expect_did,
            before_submit=before_submit,
        )


async def confirm_label_key(settings: Settings, did: str, did_key: str) -> None:
    """Resolve afresh until the document names `did_key`; ResolutionError if it does not in time."""
    async with resolver_for(settings) as resolver:
        if not await wait_for_label_key(resolver, did, did_key, CONFIRM_SECONDS):
            raise ResolutionError(f"{did} does not show the label key {did_key} yet; check with `labeler doctor`")
