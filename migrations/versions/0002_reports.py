"""Reports, their per-subject queue status, and the moderation event audit log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ByteText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "reports",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("reported_by", ByteText, nullable=False),
        sa.Column("reason_type", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("subject_type", sa.Text, nullable=False),
        sa.Column("subject_uri", ByteText, nullable=False),
        sa.Column("subject_did", ByteText, nullable=False),
        sa.Column("subject_cid", sa.Text, nullable=True),
        sa.Column("mod_tool", sa.JSON, nullable=True),
        sa.Column("status", sa.Text, nullable=False, server_default="open"),
        sa.Column("resolved_by", sa.Text, nullable=True),
        sa.Column("resolved_at", sa.Text, nullable=True),
        sa.Column("note", sa.Text, nullable=True),
    )
    op.create_index("reports_subject", "reports", ["subject_uri", "id"])
    op.create_index("reports_status", "reports", ["status", "id"])
    op.create_index("reports_reporter", "reports", ["reported_by", "id"])
    op.create_table(
        "report_subjects",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("subject_uri", ByteText, nullable=False, unique=True),
        sa.Column("subject_did", ByteText, nullable=False),
        sa.Column("subject_type", sa.Text, nullable=False),
        sa.Column("subject_cid", sa.Text, nullable=True),
        sa.Column("report_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("open_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("open_appeal_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
        sa.Column("last_report_id", sa.BigInteger, nullable=False),
        sa.Column("last_reported_at", sa.Text, nullable=False),
        sa.Column("last_reviewed_by", sa.Text, nullable=True),
        sa.Column("last_reviewed_at", sa.Text, nullable=True),
        sa.Column("last_appealed_at", sa.Text, nullable=True),
        sa.Column("comment", sa.Text, nullable=True),
    )
    op.create_index("report_subjects_recency", "report_subjects", ["last_report_id"])
    op.create_table(
        "moderation_events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("event", sa.JSON, nullable=False),
        sa.Column("subject_type", sa.Text, nullable=False),
        sa.Column("subject_uri", ByteText, nullable=False),
        sa.Column("subject_did", ByteText, nullable=False),
        sa.Column("subject_cid", sa.Text, nullable=True),
        sa.Column("created_by", ByteText, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("report_id", sa.BigInteger, nullable=True),
        sa.Column("mod_tool", sa.JSON, nullable=True),
    )
    op.create_index("moderation_events_subject", "moderation_events", ["subject_uri", "id"])
    op.create_index("moderation_events_created_by", "moderation_events", ["created_by", "id"])


def downgrade() -> None:
    op.drop_table("moderation_events")
    op.drop_table("report_subjects")
    op.drop_table("reports")
