"""Jobs know what their blob is: `image_jobs.media` is `image` (PDQ) or `video` (vPDQ), as the record's embed
says, so the fetcher knows the size limit and where to put the bytes before it has any.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("image_jobs", sa.Column("media", sa.Text, nullable=False, server_default="image"))


def downgrade() -> None:
    with op.batch_alter_table("image_jobs") as batch:
        batch.drop_column("media")
