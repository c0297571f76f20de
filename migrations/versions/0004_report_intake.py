"""Report intake: reported subjects whose record is still to be fetched, so no report's images are lost.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ByteText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "report_intake",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("subject_uri", ByteText, nullable=False),
        sa.Column("subject_cid", ByteText, nullable=False, server_default=""),
        sa.Column("report_id", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="queued"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
        sa.UniqueConstraint("subject_uri", "subject_cid", name="report_intake_subject"),
    )
    op.create_index("report_intake_claim", "report_intake", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_table("report_intake")
