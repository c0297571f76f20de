"""Bank imports started from the console (`labeler.console.imports`), in the database rather than the memory of
the process running them: every serving process shows their progress, and one left running by a process that
stopped shows as interrupted once its lease runs out.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

ByteText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "console_imports",
        sa.Column("id", ByteText, primary_key=True),
        sa.Column("bank", sa.Text, nullable=False),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("signal_type", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("creates_bank", sa.Boolean, nullable=False),
        sa.Column("done", sa.Integer, nullable=False),
        sa.Column("landed", sa.Integer, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_console_imports_started_at", "console_imports", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_console_imports_started_at", "console_imports")
    op.drop_table("console_imports")
