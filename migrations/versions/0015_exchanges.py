"""Hash exchanges: configuration and checkpoint, and the entries each has put into its bank.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exchanges",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("bank", sa.Text, nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("checkpoint", sa.JSON, nullable=True),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("last_success_at", sa.Text, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("fetch_errors", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_fetch_at", sa.Float, nullable=True),
        sa.Column("lease_owner", sa.Text, nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
    )
    op.create_table(
        "exchange_entries",
        sa.Column("exchange", sa.Text, sa.ForeignKey("exchanges.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("remote_id", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("fetched_at", sa.Text, nullable=False),
    )
    op.create_index("exchange_entries_value", "exchange_entries", ["exchange", "value"])


def downgrade() -> None:
    op.drop_table("exchange_entries")
    op.drop_table("exchanges")
