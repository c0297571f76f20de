"""How a review decision was made: `review_items.decided_via` (console, cli, api, altitude), beside who made it
(`decided_by`), so the audit log can say both. NULL for decisions made before this column, and for items closed
by a reversal.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("review_items", sa.Column("decided_via", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("review_items") as batch:
        batch.drop_column("decided_via")
