"""Moderators of the web console (`labeler moderators add|list|remove`): a name and a scrypt hash of the
credential the operator gave them; the console signs them in with it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

ByteText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "console_moderators",
        sa.Column("name", ByteText, primary_key=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("console_moderators")
