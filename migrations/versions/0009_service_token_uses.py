"""Service tokens already used, kept until they expire: the jti replay cache, shared by every process and kept
across restarts (it was in each process's memory).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ByteText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "service_token_uses",
        sa.Column("iss", ByteText, nullable=False),
        sa.Column("token_id", ByteText, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("iss", "token_id", name="service_token_uses_pkey"),
    )
    op.create_index("service_token_uses_expires_at", "service_token_uses", ["expires_at"])


def downgrade() -> None:
    op.drop_table("service_token_uses")
