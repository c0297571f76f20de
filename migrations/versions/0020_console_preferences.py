"""Each console user's own settings (`labeler.console.preferences`): for now how the review queue hides images
until they are revealed (the default stays blurred and grey).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

ByteText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "console_preferences",
        sa.Column("user_name", ByteText, primary_key=True),
        sa.Column("wellness", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("console_preferences")
