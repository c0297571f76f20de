"""What the labeler keeps about HMA's banks, which HMA has no place for. Created by migration 0013.

`hma_banks`: the signal type and note given at `labeler bank create` (HMA banks have neither), so the same command
answers the same on both matchers. `hma_imports`: every hash `labeler bank import` has put into an HMA bank, with
HMA's content id, so a re-run skips what landed; a row without a content id is an add that was in flight when an
import stopped, resolved on the next run by reading HMA's content from `after_id` (the highest content id seen
before the add was sent: HMA's ids only grow) upward.
"""

from __future__ import annotations

import sqlalchemy as sa

from labeler.store.pipeline_schema import Id
from labeler.store.schema import metadata

hma_banks = sa.Table(
    "hma_banks",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("signal_type", sa.Text, nullable=False),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("created_at", sa.Text, nullable=False),
)

hma_imports = sa.Table(
    "hma_imports",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("bank", sa.Text, nullable=False),
    sa.Column("signal_type", sa.Text, nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("content_id", sa.BigInteger, nullable=True),  # HMA's bank_content_id; NULL while in flight
    sa.Column("after_id", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("bank", "signal_type", "value", name="hma_imports_bank_value"),
    sqlite_autoincrement=True,
)
