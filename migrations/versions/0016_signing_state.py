"""The signing hold and key generation that every label commit checks, so a key rotation switches every process
at once (issue 14 item 3).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signing_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("held_until", sa.Float, nullable=True),
        sa.Column("generation", sa.BigInteger, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("signing_state")
