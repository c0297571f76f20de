"""Who removed a bank: `bank_changes.actor` (`cli`, or the console's `admin`), so a dropped bank is audited.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("bank_changes", sa.Column("actor", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bank_changes") as batch:
        batch.drop_column("actor")
