"""Labels (current state per src, uri, cid, val) and the append-only label event log.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ByteText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "labels",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("src", ByteText, nullable=False),
        sa.Column("uri", ByteText, nullable=False),
        sa.Column("cid", ByteText, nullable=False, server_default=""),
        sa.Column("val", ByteText, nullable=False),
        sa.Column("neg", sa.Boolean, nullable=False),
        sa.Column("cts", sa.Text, nullable=False),
        sa.Column("exp", sa.Text, nullable=True),
        sa.Column("sig", sa.LargeBinary, nullable=False),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.UniqueConstraint("src", "uri", "cid", "val", name="labels_current_key"),
    )
    op.create_index("labels_uri_seq", "labels", ["uri", "seq"])
    op.create_table(
        "label_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("via", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("src", ByteText, nullable=False),
        sa.Column("uri", ByteText, nullable=False),
        sa.Column("cid", ByteText, nullable=False, server_default=""),
        sa.Column("val", ByteText, nullable=False),
        sa.Column("neg", sa.Boolean, nullable=False),
        sa.Column("cts", sa.Text, nullable=False),
        sa.Column("exp", sa.Text, nullable=True),
        sa.Column("evidence", sa.JSON, nullable=True),
    )
    op.create_index("label_events_uri", "label_events", ["uri", "id"])
    op.create_index("label_events_seq", "label_events", ["seq"])


def downgrade() -> None:
    op.drop_table("label_events")
    op.drop_table("labels")
