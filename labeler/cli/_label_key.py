"""The label key a long-running command signs with (`serve`, `worker`, `ingest --workers`): checked before it starts.

`Labeler.start` makes a development key when the keyring has no active key. That is what the embedded default
needs: our own did:web, whose document `labeler serve` makes from the active key, so a key made at start is
published as it is made (`make run` on a fresh machine). For any other DID (a did:plc, a did:web served elsewhere)
no document names a key made at start, and every label it signs fails verification at every consumer, with
nothing on our side to show it. So these commands refuse, before anything is written (no key, no database), and
say which commands make a key the DID document names. Library callers (tests, benchmarks) choose for themselves
with `Labeler.start(create_dev_key=…)`; from the CLI, making the key is the operator's step, never implicit.
"""

from __future__ import annotations

import click

from labeler.config import Settings
from labeler.keys import Keyring, KeyringError


def refuse_unpublished_dev_key(settings: Settings) -> None:
    """Raise a ClickException when starting would make a label key that no DID document names."""
    if settings.serves_did_web:
        return
    try:
        active = Keyring.open(settings.keys_dir).active_id
    except KeyringError as exc:
        raise click.ClickException(str(exc)) from None
    if active is not None:
        return  # whether the document names it is `labeler doctor`'s check: that needs the network
    from labeler.identity.doctor.identity import no_label_key_fix  # imported when used: see labeler.cli

    raise click.ClickException(
        f"no active label key in {settings.keys_dir}, and one made now would not be in {settings.did}'s DID "
        "document: every label it signed would fail verification at every consumer. Not starting.\n"
        f"Fix: {no_label_key_fix(settings.did, served_here=False)}.\n"
        "Then `labeler doctor` checks what consumers see."
    )
