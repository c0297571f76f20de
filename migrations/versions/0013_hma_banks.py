"""HMA banks' signal type and note, and the hashes `labeler bank import` has put into HMA (resumable imports).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "hma_banks",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("signal_type", sa.Text, nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("created_at", sa.Text, nullable=False),
    )
    op.create_table(
        "hma_imports",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("bank", sa.Text, nullable=False),
        sa.Column("signal_type", sa.Text, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("content_id", sa.BigInteger, nullable=True),
        sa.Column("after_id", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("bank", "signal_type", "value", name="hma_imports_bank_value"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("hma_imports")
    op.drop_table("hma_banks")
