"""Source cursors keep the time of the event they point at, so `labeler doctor` can tell how far behind the
network a source is from the database alone (a firehose `seq` says nothing about time).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pipeline_cursors", sa.Column("event_time", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pipeline_cursors") as batch:
        batch.drop_column("event_time")
