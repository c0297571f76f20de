"""Hash exchanges that fill banks (`labeler.exchanges`): their configuration and checkpoint, and what each has put
into its bank. Created by migration 0015.

`exchanges`: one row per configured exchange; `checkpoint` is the type's resume point (JSON), written after every
page, so a fetch stopped by a crash or an outage resumes where it stopped; `next_fetch_at` is when the schedule
fetches it next, and a lease (`lease_owner` until `lease_expires_at`, renewed while fetching) keeps two processes
from fetching one exchange at once. Credentials are not here: they are files
in the keys directory (mode 0600). `exchange_entries`: every entry an exchange has given us, by its id there, with
the hash it carried for the bank's signal type and when it was fetched; deletions and updates from the exchange are
applied to the bank through it.
"""

from __future__ import annotations

import sqlalchemy as sa

from labeler.store.schema import metadata

exchanges = sa.Table(
    "exchanges",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("type", sa.Text, nullable=False),  # ncmec | …
    sa.Column("bank", sa.Text, nullable=False),
    sa.Column("options", sa.JSON, nullable=False),  # the type's settings, e.g. NCMEC's environment URL
    sa.Column("checkpoint", sa.JSON, nullable=True),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("last_success_at", sa.Text, nullable=True),  # the last fetch that reached the end
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("fetch_errors", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_fetch_at", sa.Float, nullable=True),  # epoch seconds; NULL: due now
    sa.Column("lease_owner", sa.Text, nullable=True),  # the process fetching it now
    sa.Column("lease_expires_at", sa.Float, nullable=True),
)

exchange_entries = sa.Table(
    "exchange_entries",
    metadata,
    sa.Column("exchange", sa.Text, sa.ForeignKey("exchanges.name", ondelete="CASCADE"), primary_key=True),
    sa.Column("remote_id", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),  # the hash of the bank's signal type, as banked
    sa.Column("fetched_at", sa.Text, nullable=False),
)
sa.Index("exchange_entries_value", exchange_entries.c.exchange, exchange_entries.c.value)
