"""What the identity commands share: PDS account options, token prompts, a resolver, readable identity errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from labeler.cli._common import run
from labeler.config import Settings
from labeler.identity.declare import DeclarationError
from labeler.identity.pds_client import PdsAccount, PdsError
from labeler.identity.resolver import DidResolver, IdentityError
from labeler.keys import KeyInfo, Keyring, KeyringError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def run_identity(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """`run`, plus identity, PDS and declaration errors as clean CLI failures."""
    try:
        return run(coro_fn)
    except (IdentityError, DeclarationError) as exc:
        raise click.ClickException(str(exc)) from None


def resolver_for(settings: Settings) -> DidResolver:
    """A resolver with no cache and no refresh cooldown: identity commands always want the current document."""
    return DidResolver(
        plc_url=settings.plc_url, allow_insecure_did_web=settings.allow_insecure_did_web, refresh_cooldown=0
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
    if not pds_url:
        try:
            async with resolver_for(settings) as resolver:
                pds_url = await resolver.pds_endpoint(settings.did, force_refresh=True)
        except IdentityError as exc:
            raise PdsError(f"no --pds given and {settings.did} cannot be resolved: {exc}") from None
        if not pds_url:
            raise PdsError(f"no --pds given and {settings.did}'s document names no PDS")
    return PdsAccount(pds_url=pds_url, identifier=identifier or settings.did, password=password)


async def prompt_token() -> str:
    """The PLC operation token the PDS just emailed, typed by the operator."""
    prompt = "The PDS has emailed a PLC operation token to the account's address. Token"
    return str(await asyncio.to_thread(click.prompt, prompt))
