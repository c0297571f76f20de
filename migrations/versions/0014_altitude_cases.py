"""Review items handed to Altitude: its target, signal and case ids, and the decision read back.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "altitude_cases",
        sa.Column("review_item", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("target_id", sa.Text, nullable=True),
        sa.Column("signal_id", sa.Text, nullable=True),
        sa.Column("case_id", sa.Text, nullable=True),
        sa.Column("decision", sa.Text, nullable=True),
        sa.Column("polled_at", sa.Float, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
    )
    op.create_index("altitude_cases_open", "altitude_cases", ["decision", "polled_at"])


def downgrade() -> None:
    op.drop_index("altitude_cases_open", "altitude_cases")
    op.drop_table("altitude_cases")
