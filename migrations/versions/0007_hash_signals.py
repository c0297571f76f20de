"""Hash signals beyond PDQ: banks carry a signal type, exact and video hashes live in `bank_signals`, and a job
keeps every signal computed from its blob.

- `hash_banks.signal_type` (`pdq` for every existing bank) and `bank_changes.signal_type` (which table an `add`
  change's ids refer to).
- `bank_signals`: entries of banks whose signal is not PDQ. `value` is the hash as imported; `value_key` makes
  re-imports idempotent: the value itself for MD5/SHA-256, a SHA-256 of it for signals too long for a btree key
  (PostgreSQL refuses index rows over ~2.7 kB). PDQ entries stay in `bank_entries`, the table the PDQ index loads.
- `image_jobs.signals` (JSON): the exact hashes of the blob, and why no perceptual hash could be made if so.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.add_column("hash_banks", sa.Column("signal_type", sa.Text, nullable=False, server_default="pdq"))
    op.add_column("bank_changes", sa.Column("signal_type", sa.Text, nullable=False, server_default="pdq"))
    op.add_column("image_jobs", sa.Column("signals", sa.JSON, nullable=True))
    op.create_table(
        "bank_signals",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("bank_id", Id, sa.ForeignKey("hash_banks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("value_key", sa.Text, nullable=False),
        sa.Column("external_id", sa.Text, nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("added_at", sa.Text, nullable=False),
        sa.UniqueConstraint("bank_id", "value_key", name="bank_signals_bank_value"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("bank_signals")
    with op.batch_alter_table("image_jobs") as batch:
        batch.drop_column("signals")
    with op.batch_alter_table("bank_changes") as batch:
        batch.drop_column("signal_type")
    with op.batch_alter_table("hash_banks") as batch:
        batch.drop_column("signal_type")
