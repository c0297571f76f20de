"""Who disabled a bank entry, made it review-only or let it match again, through what and why:
`entry_state_changes` (`labeler.pipeline.actions.screen`), shown in the console's audit log.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "entry_state_changes",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("bank", sa.Text, nullable=False),
        sa.Column("entry_id", sa.Text, nullable=False),
        sa.Column("mode", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("via", sa.Text, nullable=True),
        sa.Column("created_at", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("entry_state_changes")
