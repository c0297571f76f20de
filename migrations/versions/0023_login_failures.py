"""Failed sign-ins (admin API, upload tokens, console) counted in the database rather than in each process's
memory: several serving processes no longer multiply a guesser's allowance, and a restart no longer forgets it.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

ByteText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("scope", ByteText, nullable=False),
        sa.Column("key", ByteText, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name="login_failures_pkey"),
    )
    op.create_index("login_failures_expires_at", "login_failures", ["expires_at"])


def downgrade() -> None:
    op.drop_index("login_failures_expires_at", "login_failures")
    op.drop_table("login_failures")
